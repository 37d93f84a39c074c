"""Exporters: PyTorch to ONNX (and, with TensorRT installed, ONNX to an engine)."""
