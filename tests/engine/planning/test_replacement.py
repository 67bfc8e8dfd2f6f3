"""The pure migration decision: saving vs the cost of loading new stages, at the measured rate."""

from __future__ import annotations

import dataclasses
import math

import pytest

from engine.carbon_values import CarbonSource
from engine.errors import InvalidInput
from engine.model import footprint, load_spec
from engine.planning.planner import make_plan
from engine.planning.replacement import (
    ServingRate,
    decide_migration,
    plan_g_per_1k_tokens,
    stage_weight_bytes,
)
from engine.planning.types import Ingress, Peer, Policy, Weights

FP = footprint(load_spec("llama-3.1-8b"), quant="bf16", context=4096, batch=1)
INGRESS = Ingress(50.1, 8.7, "frankfurt")
BUSY = ServingRate(requests_per_s=2.0, tokens_per_request=300.0)
WEIGHTS = Weights(carbon=0.8, distance=0.1, vram=0.1)


def swarm(north_g: float, south_g: float) -> tuple[Peer, ...]:
    """Two places near the ingress, two A100s each; the test moves their grids' intensity."""
    def peer(name: str, lat: float, lon: float, g: float) -> Peer:
        return Peer(name, lat, lon, free_vram_gb=20.0, carbon_g_per_kwh=g, carbon_source=CarbonSource.ELECTRICITYMAPS,
                    gpu="A100 80GB")
    return (peer("north-a", 52.5, 13.4, north_g), peer("north-b", 52.4, 13.5, north_g),
            peer("south-a", 48.1, 11.6, south_g), peer("south-b", 48.2, 11.5, south_g))


def plan_on(peers: tuple[Peer, ...]):
    return make_plan(FP, peers, INGRESS, Policy.CARBON, WEIGHTS)


def test_repricing_at_unchanged_intensities_gives_the_plans_own_figure() -> None:
    peers = swarm(50, 400)
    plan = plan_on(peers)
    assert plan_g_per_1k_tokens(plan, FP, {p.id: p for p in peers}) == pytest.approx(plan.metrics.g_co2_per_1k_tokens)


def test_when_the_running_grid_gets_dirty_a_busy_deployment_moves() -> None:
    current = plan_on(swarm(50, 400))
    assert {s.peer_id for s in current.stages} <= {"north-a", "north-b"}
    fresh = swarm(600, 80)
    decision = decide_migration(current, plan_on(fresh), FP, fresh, BUSY)
    assert decision.migrate, decision.reason
    assert decision.current_g_per_1k_tokens > decision.candidate_g_per_1k_tokens
    assert decision.saving_fraction == pytest.approx(1 - 80 / 600, rel=1e-6)
    assert set(decision.stages_to_load) <= {"south-a", "south-b"}
    assert decision.load_gb == pytest.approx(sum(stage_weight_bytes(FP, s) for s in plan_on(fresh).stages) / 1e9)
    assert 0 < decision.payback_s < 3600 and decision.net_saving_g > 0


def test_a_trickle_of_requests_does_not_repay_the_move() -> None:
    current = plan_on(swarm(50, 400))
    fresh = swarm(600, 80)
    trickle = ServingRate(requests_per_s=1 / 3600, tokens_per_request=20)
    decision = decide_migration(current, plan_on(fresh), FP, fresh, trickle)
    assert not decision.migrate and "payback" in decision.reason
    assert decision.net_saving_g < 0


def test_a_slower_loader_costs_proportionally_more() -> None:
    current = plan_on(swarm(50, 400))
    fresh = swarm(600, 80)
    fast = decide_migration(current, plan_on(fresh), FP, fresh, BUSY, load_gb_s={"south-a": 2.0, "south-b": 2.0})
    slow = decide_migration(current, plan_on(fresh), FP, fresh, BUSY, load_gb_s={"south-a": 0.2, "south-b": 0.2})
    assert slow.migration_s == pytest.approx(10 * fast.migration_s)
    assert slow.payback_s == pytest.approx(10 * fast.payback_s)


def test_a_small_saving_stays_below_the_threshold() -> None:
    current = plan_on(swarm(100, 400))
    fresh = swarm(100.0, 95.0)
    candidate = plan_on(fresh)
    decision = decide_migration(current, candidate, FP, fresh, BUSY, threshold=0.10)
    assert not decision.migrate and "threshold" in decision.reason


def test_the_same_plan_or_an_infeasible_one_never_moves() -> None:
    peers = swarm(50, 400)
    plan = plan_on(peers)
    assert decide_migration(plan, plan, FP, peers, BUSY).reason == "the candidate is the running plan"
    infeasible = dataclasses.replace(plan, feasible=False, stages=(), metrics=None)
    decision = decide_migration(plan, infeasible, FP, peers, BUSY)
    assert not decision.migrate and math.isinf(decision.payback_s)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"rate": ServingRate(-1, 10)}, "requests_per_s"),
    ({"rate": ServingRate(1, float("nan"))}, "tokens_per_request"),
    ({"horizon_h": 0}, "horizon_h"),
    ({"threshold": -0.1}, "threshold"),
])
def test_bad_inputs_name_their_field(kwargs, field) -> None:
    peers = swarm(50, 400)
    plan = plan_on(peers)
    args = {"rate": BUSY, **kwargs}
    with pytest.raises(InvalidInput) as caught:
        decide_migration(plan, plan, FP, peers, **args)
    assert caught.value.field == field


def test_a_current_stage_on_a_peer_that_left_is_named() -> None:
    peers = swarm(50, 400)
    plan = plan_on(peers)
    with pytest.raises(InvalidInput) as caught:
        decide_migration(plan, plan, FP, peers[2:], BUSY)
    assert caught.value.field == "plan.stages.peer_id"
