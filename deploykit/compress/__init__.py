"""Model compression passes as functions: structured pruning, distillation and training, INT8 quantization."""
