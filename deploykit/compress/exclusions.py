"""``--exclude``: shell-style patterns over layer names, resolved to the graph's node names."""

from __future__ import annotations

import fnmatch

import onnx

from deploykit.compress.qdq import WEIGHTED_OPS
from deploykit.errors import DeployKitError


def resolve_exclusions(proto: onnx.ModelProto, patterns: tuple[str, ...]) -> list[str]:
    """Node names matched by shell-style patterns over layer names.

    A layer name is the module path a node was exported from (``layer3.1.conv2``, ``fc``; node names
    are ``module/OpType``), the full node name, or the node's output tensor.
    """
    names = []
    for pattern in patterns:
        matched = [n.name for n in proto.graph.node if any(fnmatch.fnmatch(candidate, pattern) for candidate in (n.name, n.name.rsplit("/", 1)[0], *n.output))]
        if not matched:
            examples = ", ".join(n.name.rsplit("/", 1)[0] for n in proto.graph.node if n.op_type in WEIGHTED_OPS)[:160]
            raise DeployKitError(f"--exclude {pattern!r} matches no layer; layers are named like: {examples}")
        names += [m for m in matched if m not in names]
    return names
