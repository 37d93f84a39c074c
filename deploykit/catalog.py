"""The model catalogue: each registered model's family, input size, parameters and MACs, as package data.

``deploykit list`` reads ``catalog.json`` without importing torch, so it answers at once; a test
recomputes it from the registry, so it cannot go stale. Rebuild with ``python -m deploykit.catalog``.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import asdict, dataclass
from pathlib import Path

CATALOG_PATH = Path(__file__).with_name("catalog.json")


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    family: str
    params: int  # used in eval mode (training-only auxiliary heads excluded)
    macs: int  # one image at the default input size
    input_size: int


def read_catalog(pattern: str = "*") -> list[CatalogEntry]:
    """Catalogued models whose name matches a shell-style pattern, sorted by name."""
    entries = [CatalogEntry(**row) for row in json.loads(CATALOG_PATH.read_text())]
    return [entry for entry in entries if fnmatch.fnmatch(entry.name, pattern.lower())]


def compute_catalog() -> list[CatalogEntry]:
    """The catalogue as the registry and the profiler give it now (shapes only, on the meta device)."""
    import torch

    from deploykit.models import get_model, get_spec, list_models
    from deploykit.profile import profile_model

    entries = []
    for name in list_models():
        spec = get_spec(name)
        with torch.device("meta"):
            model = get_model(name)
        profile = profile_model(model, (1, *spec.input_shape))
        entries.append(CatalogEntry(name, spec.family, profile.inference_params, profile.macs, spec.input_size))
    return entries


if __name__ == "__main__":
    CATALOG_PATH.write_text(json.dumps([asdict(entry) for entry in compute_catalog()], indent=1) + "\n")
    print(f"wrote {CATALOG_PATH}")
