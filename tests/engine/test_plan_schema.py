"""The plan schema survives JSON round trips and rejects plans that break its invariants."""

import json

import pytest

from engine.errors import InvalidInput
from engine.plan import SCHEMA, ModelInfo, Plan, PlanMetrics, Stage


def _stage(peer_id: str, start: int, end: int, *, first: bool, last: bool) -> Stage:
    return Stage(peer_id=peer_id, layer_start=start, layer_end=end, embeddings=first, lm_head=last,
                 vram_required_gb=10.0, vram_free_gb=20.0, carbon_g_per_kwh=100.0,
                 carbon_source="country", lat=48.0, lon=2.0, gpu="RTX 4090")


def _plan() -> Plan:
    return Plan(policy="carbon", weights={"carbon": 0.6, "distance": 0.3, "vram": 0.1},
                model=ModelInfo("llama-3.1-8b", 32, 8_030_261_248, "bf16"),
                ingress={"lat": 50.1, "lon": 8.7}, feasible=True,
                stages=(_stage("a", 0, 20, first=True, last=False), _stage("b", 20, 32, first=False, last=True)),
                metrics=PlanMetrics(2, 1234.0, 100.0, 12.5, 3.2, 0.5))


def test_a_plan_round_trips_through_json_unchanged():
    plan = _plan()
    again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan
    assert plan.to_dict()["schema"] == SCHEMA


def test_an_infeasible_plan_carries_its_shortfall():
    plan = Plan(policy="vram", weights={}, model=ModelInfo("m", 4, 10, "fp32"), ingress={"lat": 0.0, "lon": 0.0},
                feasible=False, shortfall_gb=3.5, shortfall_layers=2)
    data = plan.to_dict()
    assert data["stages"] == [] and data["shortfall_gb"] == 3.5 and data["shortfall_layers"] == 2
    assert Plan.from_dict(data) == plan


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("schema"), "schema"),
        (lambda d: d.update(schema="other/1"), "schema"),
        (lambda d: d["stages"][1].update(layer_start=19), "stages[1].layer_start"),
        (lambda d: d["stages"][1].update(layer_end=31), "stages[1].layer_end"),
        (lambda d: d["stages"][0].update(embeddings=False), "stages[0].embeddings"),
        (lambda d: d["stages"][0].update(lat=float("nan")), "stages[0].lat"),
        (lambda d: d["stages"][0].update(vram_free_gb="20"), "stages[0].vram_free_gb"),
        (lambda d: d["model"].pop("num_layers"), "model.num_layers"),
        # One peer with two stages: the coordinator would deploy only the first of them.
        (lambda d: d["stages"][1].update(peer_id="a"), "stages[1].peer_id"),
        (lambda d: d["stages"][1].update(embeddings=True), "stages[1].embeddings"),
        (lambda d: d["stages"][0].update(lm_head=True), "stages[0].lm_head"),
        (lambda d: d.update(metrics=None), "metrics"),
    ],
)
def test_a_broken_plan_is_rejected_naming_the_field(mutate, field):
    data = _plan().to_dict()
    mutate(data)
    with pytest.raises(InvalidInput) as info:
        Plan.from_dict(data)
    assert info.value.field == field


def test_binding_and_certificate_cross_the_schema_and_bad_ones_name_the_field():
    from engine.planning.exact import plan_both_exact
    from engine.planning.targets import Targets
    from engine.planning.types import Weights
    from tests.engine.planning.factories import INGRESS, footprint, peer

    fp = footprint(num_layers=6, layer_mb=1500)
    peers = (peer("a", free_vram_gb=8, carbon=50), peer("b", lon=2.0, free_vram_gb=8, carbon=500),
             peer("c", lon=12.0, free_vram_gb=8, carbon=200))
    _, exact = plan_both_exact(fp, peers, INGRESS, Weights(), Targets(max_peers=3))
    assert Plan.from_dict(exact.to_dict()) == exact and exact.certificate["gap"] >= 0
    _, bound = plan_both_exact(fp, peers, INGRESS, Weights(), Targets(max_peers=1))
    data = bound.to_dict()
    assert data["feasible"] is False and data["binding"]["constraint"] == "max_peers"
    assert Plan.from_dict(data) == bound
    broken = exact.to_dict()
    broken["certificate"]["bound"] = "low"
    with pytest.raises(InvalidInput, match="certificate.bound"):
        Plan.from_dict(broken)
    del data["binding"]["message"]
    with pytest.raises(InvalidInput, match="binding.message"):
        Plan.from_dict(data)
