import numpy as np
import pytest

from engine.planning.inputs import peer_columns
from engine.planning.scoring import carbon_scores, min_max, policy_order
from engine.planning.types import Policy, Weights
from tests.engine.planning.factories import INGRESS, peer


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
    expected = 0.5 * np.array([0, 1, 0.5]) + 0.3 * d + 0.2 * (1 - np.array([0, 1, 0.5]))
    assert np.allclose(carbon_scores(cols, w), expected)


def test_orders_per_policy_with_stable_ties():
    peers = (peer("a", free_vram_gb=10, carbon=500), peer("b", free_vram_gb=30, carbon=100),
             peer("c", free_vram_gb=30, carbon=100), peer("d", free_vram_gb=20, carbon=50))
    cols = peer_columns(peers, INGRESS)
    assert list(policy_order(Policy.VRAM, cols, Weights())) == [1, 2, 3, 0]
    assert list(policy_order(Policy.CARBON, cols, Weights(1, 0, 0))) == [3, 1, 2, 0]
    with pytest.raises(ValueError, match="policy="):
        policy_order("vram", cols, Weights())
