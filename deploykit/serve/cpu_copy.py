"""The working copy of a repository that the bundled CPU tritonserver can load: each deploykit model's config with the
``python`` backend and KIND_CPU instances, ``python_model.py`` as ``1/model.py``, and a copy of the model file, verified
after it is copied: a file replaced in the repository while serving (a reload, a new instance) is never served."""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from deploykit.errors import DeployKitError
from deploykit.io import sha256_file
from deploykit.serve.repository import CONFIG_NAME, VERSION, read_model_config, read_record

_RUNTIMES = {"onnxruntime": "ort", "openvino": "openvino"}


@dataclass
class CpuCopy:
    """What the copy serves, and what it leaves out with the reason."""

    served: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    instances: int = 0
    threads: int = 1


def make_cpu_copy(repo: Path, target: Path, cores: int) -> CpuCopy:
    """Write the working copy of ``repo`` into ``target``, the cores shared among every model instance; one line when
    nothing in it can be served here."""
    from google.protobuf import text_format

    if not repo.is_dir():
        raise DeployKitError(f"model repository {repo} does not exist; write one with `deploykit triton {shlex.quote(str(repo))} FOLDER`")
    copy, chosen = CpuCopy(), []
    for folder in sorted(p for p in repo.iterdir() if p.is_dir() and not p.name.startswith(".")):
        record = read_record(folder)
        config = read_model_config(folder) if record else None
        if config is None:
            copy.skipped[folder.name] = "not written by deploykit"
        elif config.backend not in _RUNTIMES:
            copy.skipped[folder.name] = f"{config.backend} backend: serve it with NVIDIA's tritonserver on a GPU"
        else:
            chosen.append((folder, config, record))
            copy.instances += sum(group.count for group in config.instance_group)
    if not chosen:
        reasons = "; ".join(f"{name}: {why}" for name, why in copy.skipped.items()) or "it holds no model folders"
        raise DeployKitError(f"nothing in {repo} can be served on this CPU ({reasons})")
    copy.threads = max(1, cores // copy.instances)
    for folder, config, record in chosen:
        model_file = folder / VERSION / record["file"]
        served = target / folder.name
        (served / VERSION).mkdir(parents=True)
        if not model_file.is_file():
            raise DeployKitError(f"{model_file} is missing; write the repository again")
        shutil.copyfile(model_file, served / VERSION / record["file"])
        if sha256_file(served / VERSION / record["file"]) != record.get("sha256"):
            raise DeployKitError(f"{model_file} is not the file deploykit wrote there (its sha256 differs); write the repository again")
        config.backend = "python"
        config.ClearField("default_model_filename")
        config.ClearField("optimization")
        for group in config.instance_group:
            group.kind = group.KIND_CPU
        for key, value in (("file", record["file"]), ("runtime", _RUNTIMES[record["backend"]]), ("threads", str(copy.threads))):
            config.parameters[f"deploykit.{key}"].string_value = value
        (served / CONFIG_NAME).write_text(text_format.MessageToString(config))
        shutil.copy2(Path(__file__).with_name("python_model.py"), served / VERSION / "model.py")
        copy.served.append(folder.name)
    return copy
