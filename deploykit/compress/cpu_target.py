"""The x86 CPU an ``--int8-layout cpu`` file is made for, and what running it on another kind costs.

onnxruntime runs such a file in u8s8 integer kernels (uint8 activations, int8 weights). With VNNI (AVX512-VNNI or
AVX-VNNI) their dot products are exact. On AVX2 alone they add each pair of u8 x s8 products in a saturating 16-bit
lane (VPMADDUBSW): 8-bit weights can overflow it (255 x 127 x 2 > 32767), 7-bit weights cannot (255 x 64 x 2 < 32767).
So a "vnni" file has 8-bit weights and an "avx2" file 7-bit ones, and each is computed exactly on its own kind.

On a CPU without VNNI, a "vnni" file is judged as a VNNI CPU runs it: onnxruntime with its graph optimisations off
keeps every QuantizeLinear/DequantizeLinear as its own node and computes each layer in float from the dequantized
integers, without saturation (``CpuTarget.exact_emulation``). Float32 accumulation and requantization round a step
differently now and then, so it matches VNNI's kernels closely, not bit for bit: benchmarks/results/int8.md measures it.
"""

from __future__ import annotations

from dataclasses import dataclass

from deploykit.bench.machine import cpu_kind

KINDS = ("vnni", "avx2")
WEIGHT_BITS = {"vnni": 8, "avx2": 7}
ANY = "any"  # the trt and openvino layouts: their runtimes' kernels do not saturate, so the file fits every CPU


@dataclass(frozen=True)
class CpuTarget:
    """The kind of CPU a file is for (``KINDS``, or ``ANY``) and the kind of this machine."""

    kind: str
    machine: str

    @classmethod
    def resolve(cls, layout: str, requested: str) -> CpuTarget:
        """``--cpu`` for ``--int8-layout``: ``auto`` is this machine's kind; layouts other than cpu fit any CPU."""
        machine = cpu_kind()
        if layout != "cpu":
            return cls(ANY, machine)
        return cls(machine if requested == "auto" else requested, machine)

    @classmethod
    def recorded(cls, kind: str | None) -> CpuTarget | None:
        """The target a manifest recorded (None for files made before targets were recorded)."""
        return cls(kind, cpu_kind()) if kind in (*KINDS, ANY) else None

    @property
    def reduce_range(self) -> bool:
        """7-bit weights: the avx2 target's."""
        return self.kind == "avx2"

    @property
    def exact_emulation(self) -> bool:
        """Whether onnxruntime must run the file unfused to compute what its target computes (a vnni file on AVX2)."""
        return self.kind == "vnni" and self.machine != "vnni"

    def describe(self, requested: str = "") -> str:
        """One phrase for the export's output (a vnni or avx2 target), saying where ``auto`` came from."""
        origin = " (--cpu auto: this machine's kind)" if requested == "auto" else ""
        return f"{self.kind.upper()} CPUs, {WEIGHT_BITS[self.kind]}-bit weights{origin}"

    def mismatch_warning(self, file: str, runtime: str) -> str | None:
        """One line where running ``file`` on ``runtime`` here is known to cost accuracy; None where it is not."""
        if runtime != "ort" or self.kind in (ANY, self.machine):
            return None
        if self.kind == "vnni":
            return (
                f"{file} was made for VNNI CPUs (8-bit weights); onnxruntime's AVX2 kernels on this CPU can saturate them and lose accuracy: re-export with --cpu avx2 for this machine"
            )
        return f"{file} was made for AVX2 CPUs (7-bit weights); this VNNI CPU computes 8-bit weights exactly: re-export with --cpu vnni to keep the precision 7-bit weights give up"
