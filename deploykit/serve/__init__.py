"""Serving: Triton model repositories written from exports, the bundled CPU tritonserver, and load measured against it.

``triton_config`` turns an exported ONNX file into a validated ``config.pbtxt``; ``repository`` publishes model
folders; ``server`` runs the tritonserver of ``nvidia-pytriton`` with the Python backend (``python_model.py`` runs the
file with onnxruntime or OpenVINO); ``load`` sweeps client concurrency with tritonclient's asyncio client.
"""
