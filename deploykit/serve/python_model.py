"""The model Triton's Python backend serves: an exported ONNX file run with deploykit's onnxruntime or OpenVINO runner.

``deploykit serve`` copies this file as ``1/model.py`` beside the model file. The batch of every request Triton hands
over at once (dynamic batching merges them) runs as one array, and each request gets its own rows back.

The stub's interpreter is isolated: the ``serve`` process's ``sys.path`` comes in ``DEPLOYKIT_SERVE_PYTHON`` and goes
first, and the model refuses to load where it would import another deploykit or numpy than ``serve`` did.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


def _use_serves_python() -> None:
    """This interpreter's sys.path led by the serve command's, and the same deploykit and numpy as it had, or an error."""
    record = json.loads(os.environ.get("DEPLOYKIT_SERVE_PYTHON", "{}"))
    if not record:
        raise RuntimeError("DEPLOYKIT_SERVE_PYTHON is not set: this model folder is served by `deploykit serve`, not by hand")
    sys.path[:] = record["path"] + [entry for entry in sys.path if entry not in record["path"]]
    import deploykit

    here = {"deploykit": deploykit.__file__, "numpy": np.__file__}
    for name, expected in record["modules"].items():
        if os.path.realpath(here[name]) != os.path.realpath(expected):
            raise RuntimeError(
                f"Triton's Python stub imports {name} from {here[name]}, but `deploykit serve` ran with "
                f"{expected} (stub prefix {sys.prefix}, serve's {record['prefix']}); run serve with the "
                "Python environment that should serve the model"
            )


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        _use_serves_python()
        from deploykit.runtime import cpu_runner

        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        folder = os.path.join(args["model_repository"], args["model_version"])
        self.input = config["input"][0]["name"]
        self.output = config["output"][0]["name"]
        self.runner = cpu_runner(os.path.join(folder, parameters["deploykit.file"]), parameters["deploykit.runtime"], threads=int(parameters["deploykit.threads"])).load()
        declared = [int(d) for d in config["input"][0]["dims"]]
        takes = list(self.runner.input_metadata().shape[1:])
        if any(d != -1 and t is not None and d != t for d, t in zip(declared, takes)) or len(declared) != len(takes):
            raise ValueError(f"config.pbtxt declares input dims {declared} but {parameters['deploykit.file']} takes {takes}; write the repository again with `deploykit triton`")

    def execute(self, requests: list) -> list:
        arrays = [pb_utils.get_input_tensor_by_name(request, self.input).as_numpy() for request in requests]
        try:
            logits = self.runner.infer(np.concatenate(arrays))
        except Exception as exc:  # every request of the batch gets the error, the server keeps running
            error = pb_utils.TritonError(f"{type(exc).__name__}: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        rows = np.split(logits, np.cumsum([len(a) for a in arrays])[:-1])
        return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output, np.ascontiguousarray(part))]) for part in rows]

    def finalize(self) -> None:
        self.runner.close()
