"""The pure parts of the measured-vs-estimated view: table cells, chart series, tooltip, window size."""

from __future__ import annotations

import numpy as np

from engine.carbon_values import CarbonSource
from engine.plan import ModelInfo, Plan, PlanMetrics
from engine.planning.types import Peer
from prismn_gui.live_chart import measured_series
from prismn_gui.map_hover import nearest, peer_tooltip
from prismn_gui.measured_view import energy_note, measured_cells
from prismn_gui.window_size import initial_size, minimum_size

PLAN = Plan(policy="carbon", weights={}, model=ModelInfo("m", 2, 1, "bf16"), ingress={"lat": 0.0, "lon": 0.0},
            feasible=True, stages=(), metrics=PlanMetrics(2, 100.0, 30.0, 40.0, 2.0, 0.5))
RESULT = {"token_ids": [1, 2, 3, 4], "measured": {
    "ttft_s": 0.25, "decode_ms_per_token": 50.0, "tokens_per_s": 20.0, "g_co2": 0.01, "estimated": True,
    "energy_method": "cpu-time model (estimated)", "step_ms": [250.0, 50.0, 50.0, 50.0],
    "cumulative_g_co2": [0.004, 0.006, 0.008, 0.01]}}


def test_a_measured_row_puts_each_estimate_beside_its_measurement_and_marks_estimated_energy():
    assert measured_cells(PLAN, RESULT) == ("0.25", "40.0 → 50.0", "20.0", "0.008 → 0.01*")
    assert "estimated" in energy_note(RESULT)
    assert measured_cells(PLAN, {"token_ids": []})[0] == "—"


def test_the_chart_series_is_the_running_rate_and_cumulative_grams():
    tokens, rates, grams = measured_series(RESULT)
    assert tokens == [1, 2, 3, 4]
    assert rates[0] == 4.0 and rates[-1] == 4 / 0.4
    assert grams == [0.004, 0.006, 0.008, 0.01]


def test_the_tooltip_names_id_gpu_free_vram_carbon_and_its_source():
    peer = Peer("oslo-rtx4090", 59.9, 10.7, 22.1, 28.0, CarbonSource.COUNTRY, gpu="RTX 4090")
    text = peer_tooltip(peer)
    assert "oslo-rtx4090" in text and "RTX 4090" in text and "22.1 GB" in text and "28 gCO2/kWh (country)" in text
    points = np.array([[10.0, 10.0], [100.0, 100.0]])
    assert nearest(points, 98, 103) == 1 and nearest(points, 50, 50) is None


def test_the_window_fits_a_laptop_screen_and_keeps_1280x800_where_there_is_room():
    assert initial_size(1920, 1080) == (1280, 800)
    width, height = initial_size(1366, 768)
    assert width <= 1366 and height <= 768 - 60
    assert minimum_size(1366, 768)[1] <= height
