"""Planning to targets: placement constraints hold for both policies, targets hold for the carbon
plan, and an infeasible ask names the binding constraint and by how much."""

import random

import pytest

from engine.errors import InvalidInput
from engine.plan import Plan
from engine.planning.assignment import cheapest_layer_counts
from engine.planning.targets import Targets, check_targets
from engine.planning.to_targets import plan_both_to_targets, prepare_targets
from engine.planning.types import Weights
from tests.engine.planning.factories import INGRESS, footprint, peer
from tests.engine.planning.test_planner import assert_valid_plan

FP = footprint(num_layers=40, layer_mb=3000, embedding_mb=2000, lm_head_mb=2000)
COUNTRIES = ["DE", "FR", "NL", "US", "CN", "BR", None]


def swarm(seed: int = 1, count: int = 30):
    rng = random.Random(seed)
    return tuple(peer(f"s{i}", lat=rng.uniform(-50, 60), lon=rng.uniform(-120, 140),
                      free_vram_gb=rng.uniform(20, 80), carbon=rng.uniform(10, 800),
                      gpu=rng.choice(["RTX 4090", "A100 80GB", "H100 80GB", "L4"]),
                      country=rng.choice(COUNTRIES)) for i in range(count))


def test_no_targets_keeps_both_plans_valid_and_the_objective_no_worse_than_the_baseline():
    peers = swarm()
    vram, carbon = plan_both_to_targets(FP, peers, INGRESS, Weights(), Targets())
    assert_valid_plan(vram, FP, peers)
    assert_valid_plan(carbon, FP, peers)
    ti = prepare_targets(FP, peers, INGRESS, Weights(), Targets())
    # J is scaled by the baseline (J(baseline) = 1) and the baseline's own set is a candidate.
    assert ti.objective.value(vram.metrics) == pytest.approx(1.0)
    assert ti.objective.value(carbon.metrics) <= 1.0 + 1e-9


@pytest.mark.parametrize("targets", [
    Targets(allow_countries=frozenset({"DE", "FR", "NL"})),
    Targets(deny_countries=frozenset({"US", "CN"}), exclude_peers=frozenset({"s0", "s1", "s2"})),
    Targets(max_peers=3),
])
def test_placement_constraints_bind_both_policies(targets):
    peers = swarm(2, count=40)
    by_id = {p.id: p for p in peers}
    for plan in plan_both_to_targets(FP, peers, INGRESS, Weights(), targets):
        if not plan.feasible:
            assert plan.binding is not None
            continue
        assert_valid_plan(plan, FP, peers)
        for s in plan.stages:
            country = by_id[s.peer_id].country
            assert targets.allow_countries is None or country in targets.allow_countries
            assert country not in targets.deny_countries and s.peer_id not in targets.exclude_peers
        assert targets.max_peers is None or len(plan.stages) <= targets.max_peers
        assert plan.targets == targets.to_dict()


def test_a_peer_of_unknown_country_is_never_in_an_allow_list():
    peers = (peer("somewhere", free_vram_gb=80, country=None), peer("berlin", free_vram_gb=80, country="DE"))
    fp = footprint(num_layers=4, layer_mb=1000)
    for plan in plan_both_to_targets(fp, peers, INGRESS, Weights(), Targets(allow_countries=frozenset({"DE"}))):
        assert [s.peer_id for s in plan.stages] == ["berlin"]


def test_the_carbon_plan_meets_a_reachable_latency_target_and_names_an_unreachable_one():
    peers = swarm(3)
    _, free = plan_both_to_targets(FP, peers, INGRESS, Weights(1, 0, 0), Targets())
    asked = free.metrics.est_ms_per_token * 0.8
    _, fast = plan_both_to_targets(FP, peers, INGRESS, Weights(1, 0, 0), Targets(max_ms_per_token=asked))
    if fast.feasible:
        assert fast.metrics.est_ms_per_token <= asked
        assert fast.metrics.g_co2_per_1k_tokens >= free.metrics.g_co2_per_1k_tokens - 1e-12
    vram, never = plan_both_to_targets(FP, peers, INGRESS, Weights(), Targets(max_ms_per_token=0.5))
    assert vram.feasible                     # the baseline ignores metric targets
    assert not never.feasible and never.stages == () and never.metrics is None
    binding = never.binding
    assert binding["constraint"] == "max_ms_per_token" and binding["asked"] == 0.5
    assert binding["reachable"] > 0.5
    assert f"is {binding['reachable']:.1f}, above the 0.5 asked" in binding["message"]
    assert Plan.from_dict(never.to_dict()) == never


def test_binding_messages_name_the_countries_and_the_fewest_peers():
    peers = swarm(4)
    allowed = frozenset({"DE", "FR"})
    _, plan = plan_both_to_targets(FP, peers, INGRESS, Weights(),
                                   Targets(allow_countries=allowed, max_g_co2_per_1k=1e-9))
    assert plan.binding["constraint"] in ("max_g_co2_per_1k", "placement")
    assert "with peers in DE, FR" in plan.binding["message"]
    vram, carbon = plan_both_to_targets(FP, peers, INGRESS, Weights(), Targets(max_peers=1))
    for p in (vram, carbon):
        assert not p.feasible and p.binding["constraint"] == "max_peers"
        assert p.binding["reachable"] >= 2 and "above the 1 asked" in p.binding["message"]


def test_placement_that_cannot_hold_the_model_reports_the_shortfall():
    peers = swarm(5)
    one = frozenset(p.id for p in peers[1:])
    vram, carbon = plan_both_to_targets(FP, peers, INGRESS, Weights(), Targets(exclude_peers=one))
    for p in (vram, carbon):
        assert not p.feasible and p.binding["constraint"] == "placement"
        assert p.shortfall_layers >= 1 and "cannot hold" in p.binding["message"]


@pytest.mark.parametrize(("targets", "field"), [
    (Targets(max_ms_per_token=0), "max_ms_per_token"),
    (Targets(max_ms_per_token=float("nan")), "max_ms_per_token"),
    (Targets(max_g_co2_per_1k=-1), "max_g_co2_per_1k"),
    (Targets(max_peers=0), "max_peers"),
    (Targets(max_peers=2.5), "max_peers"),
    (Targets(allow_countries=frozenset({"Germany"})), "allow_countries"),
    (Targets(allow_countries=frozenset()), "allow_countries"),
    (Targets(deny_countries=frozenset({"D"})), "deny_countries"),
    (Targets(exclude_peers=frozenset({"nobody"})), "exclude_peers"),
])
def test_bad_targets_name_the_field(targets, field):
    with pytest.raises(InvalidInput) as error:
        check_targets(targets, swarm())
    assert error.value.field == field


def test_country_codes_are_normalised():
    checked = check_targets(Targets(allow_countries=frozenset({"de", " fr"})), swarm())
    assert checked.allow_countries == frozenset({"DE", "FR"})


def test_cheapest_layer_counts_fill_the_cheapest_stage_first_within_capacity():
    per_layer = [3.0, 1.0, 2.0]
    counts = cheapest_layer_counts(10, [4, 5, 6], lambda c: c * per_layer)
    assert counts == [1, 5, 4]
    with pytest.raises(ValueError):
        cheapest_layer_counts(20, [4, 5, 6], lambda c: c * per_layer)
