"""Plans over live peers use what the runners measured: compute per layer and round trips per leg."""

from __future__ import annotations

import math

import pytest

from engine.carbon_values import CarbonSource
from engine.errors import InvalidInput
from engine.model import footprint, load_spec
from engine.planning.latency import one_way_ms
from engine.planning.planner import make_plan
from engine.planning.types import Ingress, Peer, Policy, Weights

INGRESS = Ingress(lat=50.11, lon=8.68)
FP = footprint(load_spec("smollm2"))


def peers(**measured) -> tuple[Peer, ...]:
    gb = FP.stage_bytes(FP.num_layers, first=True, last=True) / 2**30 * 0.75
    return (Peer("paris", 48.86, 2.35, gb, 30.0, CarbonSource.EXPLICIT, gpu="CPU", power_w=20.0, **measured),
            Peer("stockholm", 59.33, 18.07, gb, 20.0, CarbonSource.EXPLICIT, gpu="CPU", power_w=20.0, **measured))


def test_measured_compute_replaces_the_gpu_table_and_the_stage_table_says_so():
    table = make_plan(FP, peers(), INGRESS, Policy.CARBON, Weights())
    measured = make_plan(FP, peers(ms_per_layer=2.0, head_ms=10.0), INGRESS, Policy.CARBON, Weights())
    assert {s.compute_source for s in table.stages} == {"gpu table"}
    assert {s.compute_source for s in measured.stages} == {"measured"}
    first, last = measured.stages
    assert first.est_compute_ms == pytest.approx(2.0 * first.num_layers)
    assert last.est_compute_ms == pytest.approx(2.0 * last.num_layers + 10.0)
    network_ms = measured.metrics.est_ms_per_token - first.est_compute_ms - last.est_compute_ms
    assert network_ms == pytest.approx(table.metrics.est_ms_per_token - sum(s.est_compute_ms for s in table.stages))


def test_a_measured_round_trip_replaces_the_distance_model_on_a_middle_leg():
    base = peers(ms_per_layer=2.0)
    plan = make_plan(FP, base, INGRESS, Policy.CARBON, Weights())
    a, b = (s.peer_id for s in plan.stages)
    with_rtt = tuple(Peer(**{**p.__dict__, "rtt_ms_to": ((b, 100.0),)}) if p.id == a else p for p in base)
    measured = make_plan(FP, with_rtt, INGRESS, Policy.CARBON, Weights())
    modelled_leg = float(one_way_ms(_leg_km(plan)))
    assert measured.metrics.est_ms_per_token - plan.metrics.est_ms_per_token == pytest.approx(50.0 - modelled_leg)


def _leg_km(plan) -> float:
    from engine.geo import haversine_km

    a, b = plan.stages
    return haversine_km(a.lat, a.lon, b.lat, b.lon)


@pytest.mark.parametrize("field,value", [("ms_per_layer", -1.0), ("ms_per_layer", math.inf), ("head_ms", 0.0)])
def test_bad_measurements_are_refused_naming_the_field(field, value):
    with pytest.raises(InvalidInput) as caught:
        make_plan(FP, peers(**{field: value}), INGRESS, Policy.CARBON, Weights())
    assert caught.value.field == f"peers[0].{field}"


def test_bad_round_trips_are_refused_naming_the_field():
    with pytest.raises(InvalidInput) as caught:
        make_plan(FP, peers(rtt_ms_to=(("x", -3.0),)), INGRESS, Policy.CARBON, Weights())
    assert caught.value.field == "peers[0].rtt_ms_to[0]"
