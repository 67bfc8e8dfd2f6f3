"""Energy one stage step takes on this runner, measured the best way the hardware allows.

Methods, best first (`EnergyMeter.method` names the one in use; shown wherever the figure is):
- "nvml": the GPU's total-energy counter (mJ since the driver loaded), read before and after.
- "rapl": the CPU package counter under /sys/class/powercap (µJ), when readable. It counts the whole
  package, other processes included: an upper bound on a shared machine.
- "cpu-time model (estimated)": this process's CPU time × CPU_WATTS_PER_CORE. An estimate, labelled so.
"""

from __future__ import annotations

import time
from pathlib import Path

CPU_WATTS_PER_CORE = 10.0
"""One busy core's share of a CPU's power: desktop/server parts draw 65-250 W TDP over 8-32 cores,
i.e. ~8-12 W per core under load (the per-core figure codecarbon's CPU model derives from TDP)."""

RAPL_ENERGY = Path("/sys/class/powercap/intel-rapl:0/energy_uj")
CPU_MODEL = "cpu-time model (estimated)"


class EnergyMeter:
    """`start()` before a step, `stop(token)` after: joules the step took (by `method`)."""

    def __init__(self, device: str | None = "cpu", device_index: int = 0) -> None:
        """`device` None: the GPU when NVML sees one (as the runner's own default), else the CPU."""
        self._nvml = _nvml_handle(device_index) if device is None or str(device).startswith("cuda") else None
        self._rapl = _rapl_readable()
        if self._nvml is not None:
            self.method = "nvml"
        elif self._rapl:
            self.method = "rapl"
        else:
            self.method = CPU_MODEL

    def start(self) -> tuple[float, float]:
        return time.perf_counter(), self._counter_j()

    def stop(self, started: tuple[float, float]) -> tuple[float, float]:
        """(wall ms, joules) since `started`."""
        wall_s = time.perf_counter() - started[0]
        return wall_s * 1000.0, max(0.0, self._counter_j() - started[1])

    def _counter_j(self) -> float:
        if self._nvml is not None:
            import pynvml

            return pynvml.nvmlDeviceGetTotalEnergyConsumption(self._nvml) / 1000.0
        if self._rapl:
            try:
                return int(RAPL_ENERGY.read_text()) / 1e6
            except (OSError, ValueError):
                self._rapl = False
        return time.process_time() * CPU_WATTS_PER_CORE


def _rapl_readable() -> bool:
    try:
        int(RAPL_ENERGY.read_text())
        return True
    except (OSError, ValueError):
        return False


def _nvml_handle(index: int):  # noqa: ANN202 - pynvml's handle type
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)       # Volta and later only
        return handle
    except Exception:
        return None
