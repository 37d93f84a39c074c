"""A file's batch dimension: a fixed size, or dynamic."""

from __future__ import annotations

from dataclasses import dataclass

DYNAMIC = "batch"  # a dynamic batch, as a manifest's input shape writes it (the graph's symbolic dimension)


@dataclass(frozen=True)
class Batch:
    size: int | None  # None: dynamic

    @classmethod
    def of(cls, dim: int | str | None) -> Batch:
        """From a shape's first dimension: a number, or ``"batch"``/None where it is dynamic."""
        return cls(dim if isinstance(dim, int) and not isinstance(dim, bool) else None)

    @classmethod
    def of_graph(cls, model) -> Batch:
        """An ONNX model's (onnx.ModelProto) first input's batch: its fixed size, or dynamic where it has none."""
        return cls(model.graph.input[0].type.tensor_type.shape.dim[0].dim_value or None)

    @property
    def dynamic(self) -> bool:
        return self.size is None

    @property
    def dim(self) -> int | str:
        """As the manifest's input shape writes it."""
        return DYNAMIC if self.size is None else self.size

    @property
    def timed(self) -> int:
        """The batch a file is timed at: its own, or 1 where it is dynamic."""
        return self.size or 1
