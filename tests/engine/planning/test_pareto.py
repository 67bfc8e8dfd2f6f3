import pytest

from engine.errors import InvalidInput
from engine.planning.pareto import ParetoPoint, pareto_sweep, weight_grid
from tests.engine.planning.factories import INGRESS, footprint, peer
from tests.engine.planning.test_planner import assert_valid_plan


def mixed_swarm():
    # Fast-but-dirty peers near the ingress, slow-but-green ones far away, and in between.
    return (peer("fast-dirty", lat=50.1, lon=8.7, free_vram_gb=80, carbon=700, gpu="H100 80GB"),
            peer("fast-mid", lat=48.1, lon=11.6, free_vram_gb=80, carbon=350, gpu="A100 80GB"),
            peer("slow-green", lat=64.1, lon=-21.9, free_vram_gb=48, carbon=28, gpu="RTX A6000"),
            peer("slow-green-2", lat=-41.3, lon=174.8, free_vram_gb=24, carbon=90, gpu="T4"),
            peer("mid", lat=45.5, lon=-73.6, free_vram_gb=48, carbon=30, gpu="L40S"))


def test_weight_grid_covers_the_simplex():
    grid = weight_grid(6)
    assert len(grid) == 28
    assert all(w.carbon + w.distance + w.vram == pytest.approx(1) for w in grid)
    assert len({(w.carbon, w.distance, w.vram) for w in grid}) == 28
    with pytest.raises(InvalidInput, match="steps=0"):
        weight_grid(0)


def test_sweep_returns_a_sorted_non_dominated_set_of_distinct_valid_plans():
    fp = footprint(num_layers=32, layer_mb=1000)
    points = pareto_sweep(fp, mixed_swarm(), INGRESS, steps=6)
    assert points and all(isinstance(p, ParetoPoint) for p in points)
    ms = [p.plan.metrics.est_ms_per_token for p in points]
    co2 = [p.plan.metrics.g_co2_per_1k_tokens for p in points]
    assert ms == sorted(ms)
    for i, a in enumerate(points):
        assert_valid_plan(a.plan, fp, mixed_swarm())
        assert a.plan.policy == "carbon"
        for j in range(len(points)):
            if i != j:   # nobody is at least as good on both axes and better on one
                assert not (ms[j] <= ms[i] and co2[j] <= co2[i] and (ms[j] < ms[i] or co2[j] < co2[i]))
    keys = [tuple((s.peer_id, s.layer_start, s.layer_end) for s in p.plan.stages) for p in points]
    assert len(keys) == len(set(keys))
    assert len(points) >= 2          # this swarm has a real trade-off


def test_sweep_of_an_infeasible_swarm_is_empty():
    assert pareto_sweep(footprint(num_layers=200, layer_mb=2000), mixed_swarm(), INGRESS) == []
