"""What a runner reports about its machine: GPU name, VRAM, utilisation, power (NVML), or a CPU fallback.

NVML is read through `pynvml` (nvidia-ml-py). On a machine without an NVIDIA driver `nvmlInit()`
raises NVMLError_LibraryNotFound; the runner then reports host memory from /proc/meminfo so demos
still work, and `vram_gb_override` lets a demo pretend to have a given amount of free VRAM.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine import GB
from engine.errors import InvalidInput

CPU_FALLBACK_NOTE = "no NVIDIA GPU: CPU fallback"


@dataclass(frozen=True)
class GpuMetrics:
    gpu: str | None                  # NVML device name; None on the CPU fallback
    total_vram_gb: float             # GPU memory, or host memory on the CPU fallback
    free_vram_gb: float
    utilization_pct: float | None    # GPU busy over the last sample period (NVML), None on CPU
    power_w: float | None            # current board power draw, None on CPU
    device_index: int | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_metrics(device_index: int = 0, vram_gb_override: float | None = None) -> GpuMetrics:
    """Readings for one GPU via NVML, else the host-memory fallback; `vram_gb_override` replaces free VRAM."""
    if vram_gb_override is not None and not (vram_gb_override >= 0):
        raise InvalidInput("vram_gb", vram_gb_override, "expected a number >= 0")
    metrics = _read_nvml(device_index)
    if metrics is None:
        metrics = _read_host_memory()
    if vram_gb_override is None:
        return metrics
    note = f"{metrics.note}; " if metrics.note else ""
    return GpuMetrics(gpu=metrics.gpu, total_vram_gb=max(metrics.total_vram_gb, vram_gb_override),
                      free_vram_gb=float(vram_gb_override), utilization_pct=metrics.utilization_pct,
                      power_w=metrics.power_w, device_index=metrics.device_index,
                      note=f"{note}free VRAM overridden to {vram_gb_override:g} GB (--vram-gb)")


def _read_nvml(device_index: int) -> GpuMetrics | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        # NVMLError_LibraryNotFound / DriverNotLoaded: no NVIDIA driver on this machine.
        return None
    try:
        count = pynvml.nvmlDeviceGetCount()
        if count == 0:
            return None
        if not 0 <= device_index < count:
            raise InvalidInput("device_index", device_index, f"expected 0..{count - 1} ({count} GPU(s))")
        handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
        name = pynvml.nvmlDeviceGetName(handle)
        if isinstance(name, bytes):
            name = name.decode()
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        try:
            utilization: float | None = float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except pynvml.NVMLError:
            utilization = None
        try:
            power_w: float | None = pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0  # NVML reports mW
        except pynvml.NVMLError:
            power_w = None
        return GpuMetrics(gpu=str(name), total_vram_gb=memory.total / GB, free_vram_gb=memory.free / GB,
                          utilization_pct=utilization, power_w=power_w, device_index=device_index)
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _read_host_memory(meminfo: Path = Path("/proc/meminfo")) -> GpuMetrics:
    total_kb, available_kb = _meminfo_kb(meminfo)
    return GpuMetrics(gpu=None, total_vram_gb=total_kb * 1024 / GB, free_vram_gb=available_kb * 1024 / GB,
                      utilization_pct=None, power_w=None, device_index=None, note=CPU_FALLBACK_NOTE)


def _meminfo_kb(meminfo: Path) -> tuple[int, int]:
    """MemTotal and MemAvailable in kB from /proc/meminfo; zeros where the file is absent (non-Linux)."""
    try:
        text = meminfo.read_text()
    except OSError:
        return 0, 0
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key.strip()] = int(parts[0])
    total = values.get("MemTotal", 0)
    return total, values.get("MemAvailable", values.get("MemFree", 0))
