"""The model Triton's Python backend serves: an exported ONNX file run with deploykit's onnxruntime or OpenVINO runner.

``deploykit serve`` copies this file as ``1/model.py`` beside the model file. The batch of every request Triton hands
over at once (dynamic batching merges them) runs as one array, and each request gets its own rows back.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

from deploykit.runtime import cpu_runner


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        folder = os.path.join(args["model_repository"], args["model_version"])
        self.input = config["input"][0]["name"]
        self.output = config["output"][0]["name"]
        self.runner = cpu_runner(os.path.join(folder, parameters["deploykit.file"]), parameters["deploykit.runtime"],
                                 threads=int(parameters["deploykit.threads"])).load()
        declared = [int(d) for d in config["input"][0]["dims"]]
        takes = list(self.runner.input_metadata().shape[1:])
        if any(d != -1 and t is not None and d != t for d, t in zip(declared, takes)) or len(declared) != len(takes):
            raise ValueError(f"config.pbtxt declares input dims {declared} but {parameters['deploykit.file']} takes {takes}; "
                             "write the repository again with `deploykit triton`")

    def execute(self, requests: list) -> list:
        arrays = [pb_utils.get_input_tensor_by_name(request, self.input).as_numpy() for request in requests]
        try:
            logits = self.runner.infer(np.concatenate(arrays))
        except Exception as exc:  # every request of the batch gets the error, the server keeps running
            error = pb_utils.TritonError(f"{type(exc).__name__}: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        rows = np.split(logits, np.cumsum([len(a) for a in arrays])[:-1])
        return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output, np.ascontiguousarray(part))])
                for part in rows]

    def finalize(self) -> None:
        self.runner.close()
