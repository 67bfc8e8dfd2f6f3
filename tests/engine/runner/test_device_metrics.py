"""Runner metrics: NVML where a driver exists, a clear host-memory fallback where it does not."""

from __future__ import annotations

import pytest

from engine.errors import InvalidInput
from engine.runner.device_metrics import CPU_FALLBACK_NOTE, GpuMetrics, _read_host_memory, read_metrics


def _has_nvidia() -> bool:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


def test_readings_are_consistent_and_serialisable():
    metrics = read_metrics()
    record = metrics.to_dict()
    assert set(record) == {"gpu", "total_vram_gb", "free_vram_gb", "utilization_pct", "power_w",
                           "device_index", "note"}
    assert 0 < metrics.free_vram_gb <= metrics.total_vram_gb
    if not _has_nvidia():
        assert metrics.gpu is None and metrics.note == CPU_FALLBACK_NOTE
        assert metrics.power_w is None and metrics.utilization_pct is None


def test_host_memory_fallback_reads_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       25165824 kB\nMemFree:  1000 kB\nMemAvailable:   12582912 kB\n")
    metrics = _read_host_memory(meminfo)
    assert metrics == GpuMetrics(gpu=None, total_vram_gb=24.0, free_vram_gb=12.0, utilization_pct=None,
                                 power_w=None, device_index=None, note=CPU_FALLBACK_NOTE)


def test_vram_override_for_demos():
    metrics = read_metrics(vram_gb_override=80.0)
    assert metrics.free_vram_gb == 80.0 and metrics.total_vram_gb >= 80.0
    assert "--vram-gb" in metrics.note


def test_negative_vram_override_is_refused():
    with pytest.raises(InvalidInput) as error:
        read_metrics(vram_gb_override=-1.0)
    assert error.value.field == "vram_gb"
