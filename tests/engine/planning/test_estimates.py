import math

import numpy as np
import pytest

from engine.plan import Stage
from engine.planning.estimates import (
    BANDWIDTH_EFFICIENCY,
    COMPUTE_EFFICIENCY,
    StageLoad,
    plan_metrics,
    stage_seconds,
)
from engine.planning.gpus import GpuSpec
from engine.planning.latency import one_way_ms
from tests.engine.planning.factories import MB, footprint


def stage(pid, start, end, first, last, carbon, required_gb=10.0, free_gb=20.0):
    return Stage(pid, start, end, first, last, required_gb, free_gb, carbon, "explicit", 0.0, 0.0)


def test_stage_time_is_the_slower_of_compute_and_memory():
    fp = footprint(num_layers=10, layer_mb=1000, kv_mb=0, lm_head_mb=500)
    memory_bound = GpuSpec(tflops=1000.0, power_w=300.0, bandwidth_gb_s=100.0)
    seconds = stage_seconds(fp, StageLoad(4, last=False), memory_bound)
    assert seconds == pytest.approx(4 * 1000 * MB / (100e9 * BANDWIDTH_EFFICIENCY))
    compute_bound = GpuSpec(tflops=1e-3, power_w=300.0, bandwidth_gb_s=1e6)
    seconds = stage_seconds(fp, StageLoad(4, last=True), compute_bound)
    flops = 4 * fp.layer_flops_per_token + fp.head_flops_per_token
    assert seconds == pytest.approx(flops / (1e9 * COMPUTE_EFFICIENCY))


def test_plan_metrics_by_hand():
    fp = footprint(num_layers=10, layer_mb=1000, kv_mb=0, lm_head_mb=0)
    gpu = GpuSpec(tflops=1000.0, power_w=400.0, bandwidth_gb_s=1000.0)
    stages = [stage("a", 0, 4, True, False, carbon=100.0), stage("b", 4, 10, False, True, carbon=400.0)]
    legs_km = np.array([100.0, 1000.0, 900.0])
    metrics = plan_metrics(fp, stages, [gpu, gpu], legs_km, (math.nan, 30.0))
    sec_a = 4 * 1000 * MB / (1000e9 * BANDWIDTH_EFFICIENCY)
    sec_b = 6 * 1000 * MB / (1000e9 * BANDWIDTH_EFFICIENCY)
    network_ms = float(one_way_ms(100.0) + one_way_ms(1000.0)) + 30.0 / 2   # measured RTT/2
    assert metrics.peers_used == 2
    assert metrics.tour_km == 2000.0
    assert metrics.est_ms_per_token == pytest.approx(network_ms + 1000 * (sec_a + sec_b))
    grams_per_token = 400 * sec_a / 3.6e6 * 100 + 400 * sec_b / 3.6e6 * 400
    assert metrics.g_co2_per_1k_tokens == pytest.approx(1000 * grams_per_token)
    assert metrics.avg_carbon_g_per_kwh == pytest.approx((4 * 100 + 6 * 400) / 10)
    assert metrics.vram_utilization == pytest.approx(20 / 40)
