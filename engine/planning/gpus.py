"""Default compute, power and memory-bandwidth figures per GPU, for peers that do not report them.

Figures are the vendors' datasheet values: dense (no sparsity) bf16 tensor TFLOPS (fp16 for V100
and T4, which lack bf16), board power under load in W, memory bandwidth in GB/s. Consumer cards
are quoted with fp32 accumulation, the mode PyTorch uses.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class GpuSpec(NamedTuple):
    tflops: float            # dense bf16 tensor TFLOPS
    power_w: float           # board power under load
    bandwidth_gb_s: float    # memory bandwidth, 1e9 bytes/s


GPU_TABLE: dict[str, GpuSpec] = {
    "H100 80GB": GpuSpec(989.0, 700.0, 3350.0),      # SXM5
    "A100 80GB": GpuSpec(312.0, 400.0, 2039.0),      # SXM4
    "A100 40GB": GpuSpec(312.0, 400.0, 1555.0),
    "L40S": GpuSpec(362.0, 350.0, 864.0),
    "RTX 6000 Ada": GpuSpec(364.0, 300.0, 960.0),
    "RTX A6000": GpuSpec(155.0, 300.0, 768.0),
    "RTX 4090": GpuSpec(165.0, 450.0, 1008.0),
    "RTX 3090": GpuSpec(71.0, 350.0, 936.0),
    "L4": GpuSpec(121.0, 72.0, 300.0),
    "A10G": GpuSpec(70.0, 300.0, 600.0),
    "T4": GpuSpec(65.0, 70.0, 320.0),
    "RTX 4080": GpuSpec(97.5, 320.0, 717.0),
    "V100 32GB": GpuSpec(125.0, 300.0, 900.0),
    # Cards NVML reports that the rows above do not cover (they fell back to DEFAULT_GPU).
    "H200": GpuSpec(989.0, 700.0, 4800.0),          # SXM
    "L40": GpuSpec(181.0, 300.0, 864.0),
    "A10": GpuSpec(125.0, 150.0, 600.0),
    # A runner without a GPU (reported as "CPU"): a few desktop cores in PyTorch, ~1 TFLOPS fp32, two
    # busy cores at engine.runner.energy's 10 W each, ~20 GB/s of DRAM bandwidth actually streamed.
    # Far better than DEFAULT_GPU for such a runner until it has timed itself (engine.runner.calibrate).
    "CPU": GpuSpec(1.0, 20.0, 20.0),
}

DEFAULT_GPU = GpuSpec(50.0, 300.0, 500.0)
"""Unknown or unnamed GPUs: a mid-range card (between a T4 and an RTX 3090), so neither an
optimistic time nor an optimistic energy figure comes from a guess."""

_VENDOR_WORDS = {"nvidia", "geforce", "tesla", "quadro"}


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[\s\-_/]+", name.lower()) if t and t not in _VENDOR_WORDS]


def _model_token(key: str) -> str:
    """The token naming the chip ('h100', '4090', 'a6000'): the first one with a digit."""
    return next((t for t in _tokens(key) if any(c.isdigit() for c in t)), key.lower())


def gpu_spec(name: str | None) -> GpuSpec:
    """Specs for a GPU name as NVML or a user writes it ("NVIDIA A100-SXM4-80GB", "rtx 4090").

    Match order: every word of a table key in the name (longest key wins); then the chip word
    alone ("A100" -> the first A100 row); else DEFAULT_GPU.
    """
    if not name:
        return DEFAULT_GPU
    words = set(_tokens(name))
    full = [k for k in GPU_TABLE if set(_tokens(k)) <= words]
    if full:
        return GPU_TABLE[max(full, key=lambda k: len(_tokens(k)))]
    for key in GPU_TABLE:
        if _model_token(key) in words:
            return GPU_TABLE[key]
    return DEFAULT_GPU


def gpu_specs(name: str | None) -> tuple[float, float]:
    """(dense bf16 TFLOPS, board power W) for a GPU name; unknown or None -> DEFAULT_GPU."""
    spec = gpu_spec(name)
    return spec.tflops, spec.power_w


def peer_gpu_spec(gpu: str | None, tflops: float | None, power_w: float | None) -> GpuSpec:
    """A peer's effective specs: its own tflops / power_w override the table row for its GPU."""
    spec = gpu_spec(gpu)
    return GpuSpec(spec.tflops if tflops is None else float(tflops),
                   spec.power_w if power_w is None else float(power_w),
                   spec.bandwidth_gb_s)
