"""Exact mode: the MILP's plan equals brute force on swarms small enough to enumerate, passes every
check a greedy plan passes, meets the targets or names the binding one, and certifies the greedy."""

import itertools
import random

import pytest

from engine.errors import InvalidInput
from engine.planning.assignment import ranges_of, stage_capacities
from engine.planning.exact import plan_both_exact
from engine.planning.planner import plan_from_stages, plan_header
from engine.planning.targets import Targets
from engine.planning.to_targets import prepare_targets
from engine.planning.types import Policy, Weights
from tests.engine.planning.factories import INGRESS, footprint, peer
from tests.engine.planning.test_planner import assert_valid_plan

GPUS = ["RTX 4090", "A100 80GB", "T4", "L4", "H100 80GB"]


def small_swarm(seed: int, count: int = 4):
    rng = random.Random(seed)
    return tuple(peer(f"p{i}", lat=rng.uniform(-50, 60), lon=rng.uniform(-120, 140),
                      free_vram_gb=rng.uniform(4, 14), carbon=rng.uniform(10, 800),
                      gpu=rng.choice(GPUS), rtt_ms=rng.choice([None, rng.uniform(5, 200)]))
                 for i in range(count))


FP = footprint(num_layers=7, layer_mb=1500, embedding_mb=1200, lm_head_mb=1200, kv_mb=100)


def brute_force(fp, peers, weights, targets):
    """(lowest J, its plan) over every ordered subset of peers and every whole-layer split."""
    ti = prepare_targets(fp, peers, INGRESS, weights, targets)
    header = plan_header(ti.inputs, Policy.CARBON, ti.weights)
    best = (float("inf"), None)
    n = fp.num_layers
    for k in range(1, len(peers) + 1):
        for order in itertools.permutations(range(len(peers)), k):
            caps = stage_capacities(ti.inputs.caps, list(order))
            for cuts in itertools.combinations(range(1, n), k - 1):
                counts = [b - a for a, b in itertools.pairwise((0, *cuts, n))]
                if any(c > cap for c, cap in zip(counts, caps, strict=True)):
                    continue
                plan = plan_from_stages(ti.inputs, header, list(order), ranges_of(counts))
                m = plan.metrics
                if ((targets.max_ms_per_token is None or m.est_ms_per_token <= targets.max_ms_per_token)
                        and (targets.max_g_co2_per_1k is None
                             or m.g_co2_per_1k_tokens <= targets.max_g_co2_per_1k)
                        and (targets.max_peers is None or k <= targets.max_peers)):
                    value = ti.objective.value(m)
                    if value < best[0]:
                        best = (value, plan)
    return best


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("weights", [Weights(0.6, 0.3, 0.1), Weights(1, 0, 0), Weights(0.2, 0.8, 0)])
def test_exact_equals_brute_force_on_small_swarms(seed, weights):
    peers = small_swarm(seed)
    best_value, best_plan = brute_force(FP, peers, weights, Targets())
    _, exact = plan_both_exact(FP, peers, INGRESS, weights, Targets())
    if best_plan is None:
        assert not exact.feasible
        return
    assert_valid_plan(exact, FP, peers)
    cert = exact.certificate
    assert cert["optimum"] == pytest.approx(best_value, rel=1e-6)
    assert cert["bound"] == pytest.approx(best_value, rel=1e-5)
    assert cert["proven_optimal"]
    assert cert["objective"] >= cert["optimum"] - 1e-9            # the greedy cannot beat the optimum
    assert cert["gap"] == pytest.approx((cert["objective"] - cert["bound"]) / cert["bound"], abs=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_exact_under_targets_equals_brute_force_or_names_the_binding_target(seed):
    peers = small_swarm(100 + seed, count=4)
    weights = Weights(1, 0, 0)
    fastest, _ = brute_force(FP, peers, Weights(0, 1, 0), Targets())
    # The J of distance-only weights is ms/token over the baseline's: recover the fastest ms.
    ti = prepare_targets(FP, peers, INGRESS, Weights(0, 1, 0), Targets())
    if ti.objective is None:
        pytest.skip("swarm cannot hold the model")
    fastest_ms = fastest * ti.objective.baseline_ms_per_token
    for limit in (fastest_ms * 1.3, fastest_ms * 0.9):
        targets = Targets(max_ms_per_token=limit)
        best_value, best_plan = brute_force(FP, peers, weights, targets)
        _, exact = plan_both_exact(FP, peers, INGRESS, weights, targets)
        if best_plan is None:
            assert not exact.feasible and exact.stages == ()
            assert exact.binding["constraint"] == "max_ms_per_token"
            assert exact.binding["reachable"] == pytest.approx(fastest_ms, rel=1e-6)
            assert "reachable" in exact.binding["message"] and f"{limit:g}" in exact.binding["message"]
        else:
            assert_valid_plan(exact, FP, peers)
            assert exact.metrics.est_ms_per_token <= limit * (1 + 1e-6)
            assert exact.certificate["optimum"] == pytest.approx(best_value, rel=1e-6)


def test_max_peers_and_placement_bind_in_exact_mode():
    peers = small_swarm(3, count=5)
    _, exact = plan_both_exact(FP, peers, INGRESS, Weights(), Targets(max_peers=1))
    assert not exact.feasible
    assert exact.binding["constraint"] == "max_peers"
    assert exact.binding["reachable"] >= 2
    excluded = frozenset(p.id for p in peers[1:])
    vram, carbon = plan_both_exact(FP, peers, INGRESS, Weights(), Targets(exclude_peers=excluded))
    assert not vram.feasible and not carbon.feasible
    assert carbon.binding["constraint"] == "placement" and carbon.shortfall_layers >= 1


def test_exact_plan_on_a_larger_swarm_is_valid_and_at_least_as_good_as_the_greedy():
    rng = random.Random(7)
    peers = tuple(peer(f"q{i}", lat=rng.uniform(-50, 60), lon=rng.uniform(-120, 140),
                       free_vram_gb=rng.uniform(20, 80), carbon=rng.uniform(10, 800),
                       gpu=rng.choice(GPUS)) for i in range(20))
    fp = footprint(num_layers=40, layer_mb=3000, embedding_mb=2000, lm_head_mb=2000)
    targets = Targets(max_ms_per_token=400, max_peers=6)
    _, exact = plan_both_exact(fp, peers, INGRESS, Weights(), targets, time_limit_s=5)
    assert_valid_plan(exact, fp, peers)
    assert exact.metrics.peers_used <= 6 and exact.metrics.est_ms_per_token <= 400 * (1 + 1e-6)
    cert = exact.certificate
    assert cert["bound"] <= cert["optimum"] + 1e-9
    if cert["objective"] is not None:       # the greedy met the targets too
        assert cert["optimum"] <= cert["objective"] + 1e-9


def test_a_time_limit_must_be_positive():
    with pytest.raises(InvalidInput, match="time_limit_s"):
        plan_both_exact(FP, small_swarm(1), INGRESS, Weights(), Targets(), time_limit_s=0)
