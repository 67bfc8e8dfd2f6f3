import numpy as np
import pytest

from engine.planning.estimates import StageLoad, stage_seconds
from engine.planning.inputs import peer_columns
from engine.planning.planner import prepare
from engine.planning.scoring import carbon_scores, min_max, policy_order
from engine.planning.types import Policy, Weights
from tests.engine.planning.factories import INGRESS, footprint, peer


def test_min_max_normalises_and_handles_a_flat_swarm():
    assert np.allclose(min_max(np.array([10.0, 20.0, 30.0])), [0, 0.5, 1])
    assert np.all(min_max(np.array([7.0, 7.0])) == 0)
    assert len(min_max(np.array([]))) == 0


def test_carbon_score_follows_the_documented_formula():
    peers = (peer("a", lat=50.11, lon=8.68, free_vram_gb=10, carbon=100),
             peer("b", lat=40.71, lon=-74.0, free_vram_gb=30, carbon=500),
             peer("c", lat=35.68, lon=139.7, free_vram_gb=20, carbon=300))
    cols = peer_columns(peers, INGRESS)
    w = Weights(0.5, 0.3, 0.2)
    d = (cols.ingress_ms - cols.ingress_ms.min()) / np.ptp(cols.ingress_ms)
    c = np.log([100, 500, 300])
    c = (c - c.min()) / np.ptp(c)
    expected = 0.5 * c + 0.3 * d + 0.2 * (1 - np.array([0, 1, 0.5]))
    assert np.allclose(carbon_scores(cols, w, cols.carbon_g_per_kwh), expected)


def test_orders_per_policy_with_stable_ties():
    peers = (peer("a", free_vram_gb=10, carbon=500), peer("b", free_vram_gb=30, carbon=100),
             peer("c", free_vram_gb=30, carbon=100), peer("d", free_vram_gb=20, carbon=50))
    cols = peer_columns(peers, INGRESS)
    rate = cols.carbon_g_per_kwh
    assert list(policy_order(Policy.VRAM, cols, Weights(), rate)) == [1, 2, 3, 0]
    assert list(policy_order(Policy.CARBON, cols, Weights(1, 0, 0), rate)) == [3, 1, 2, 0]
    with pytest.raises(ValueError, match="policy="):
        policy_order("vram", cols, Weights(), rate)


def test_the_carbon_term_is_what_a_layer_token_emits_not_the_grid_figure_alone():
    """A T4 (70 W) on a 300 g grid emits less per layer-token than an RTX 4090 (450 W) on 250 g."""
    fp = footprint(num_layers=32, layer_mb=400)
    frugal = peer("t4", free_vram_gb=15, carbon=300, gpu="T4")
    hungry = peer("4090", free_vram_gb=15, carbon=250, gpu="RTX 4090")
    inputs = prepare(fp, (hungry, frugal), INGRESS)
    rate = inputs.g_co2_per_layer_token
    assert rate[1] < rate[0]
    assert list(policy_order(Policy.CARBON, inputs.columns, Weights(1, 0, 0), rate)) == [1, 0]
    # and it is exactly what the plan's g_co2_per_1k_tokens counts for a one-layer stage
    seconds = stage_seconds(fp, StageLoad(1, False), inputs.gpus[1])
    assert rate[1] == pytest.approx(inputs.gpus[1].power_w * seconds / 3.6e6 * 300)
