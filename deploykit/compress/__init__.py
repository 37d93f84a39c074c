"""Model compression passes: INT8 quantization (and, later, pruning and distillation)."""
