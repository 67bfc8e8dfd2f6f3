"""The window's state without a display: sliders -> weights -> both plans -> rows and messages."""

from __future__ import annotations

import json
import time

import pytest

from engine.errors import InvalidInput
from engine.plan_text import percent_text
from engine.planning.types import Weights
from engine.swarm import synthetic_peers
from prismn_gui.cities import CITIES, CUSTOM
from prismn_gui.viewmodel import (
    WEIGHT_PRESETS,
    PlanningSession,
    PlanRequest,
    parse_context,
    state_summary,
    weights_for_preset,
)
from prismn_gui.worker import PlanWorker

from .conftest import write_peers


@pytest.fixture(scope="module")
def session():
    return PlanningSession()


def test_default_request_on_the_demo_swarm_gives_both_plans_and_rows(session):
    outcome = session.compute(PlanRequest())
    assert outcome.error is None
    assert outcome.vram_plan.policy == "vram" and outcome.carbon_plan.policy == "carbon"
    assert outcome.vram_plan.feasible and outcome.carbon_plan.feasible
    labels = [row.label for row in outcome.comparison]
    assert labels == ["Feasible", "Peers used", "Tour km", "Est. ms/token", "gCO2 / 1k tokens",
                      "gCO2/kWh (layer-wtd)", "VRAM utilisation"]
    peers_row = outcome.comparison[1]
    assert peers_row.vram == str(outcome.vram_plan.metrics.peers_used)
    assert peers_row.carbon == str(outcome.carbon_plan.metrics.peers_used)
    rows = outcome.stage_rows["carbon"]
    assert len(rows) == len(outcome.carbon_plan.stages)
    first = outcome.carbon_plan.stages[0]
    assert rows[0].peer_id == first.peer_id
    assert rows[0].layers.startswith(f"{first.layer_start}–")
    assert rows[-1].layers.endswith(f"({outcome.carbon_plan.stages[-1].num_layers})")
    assert rows[0].source == first.carbon_source


def test_slider_weights_reach_the_carbon_plan_and_the_diff_column_follows(session):
    low_carbon = session.compute(PlanRequest(weights=WEIGHT_PRESETS["Low carbon"]))
    low_latency = session.compute(PlanRequest(weights=WEIGHT_PRESETS["Low latency"]))
    # The baseline ignores the sliders; the carbon plan trades carbon for distance.
    assert low_carbon.vram_plan.stages == low_latency.vram_plan.stages
    assert (low_carbon.carbon_plan.metrics.avg_carbon_g_per_kwh
            <= low_latency.carbon_plan.metrics.avg_carbon_g_per_kwh)
    assert low_latency.carbon_plan.metrics.tour_km <= low_carbon.carbon_plan.metrics.tour_km
    km_row = low_carbon.comparison[2]
    expected = percent_text(low_carbon.vram_plan.metrics.tour_km, low_carbon.carbon_plan.metrics.tour_km)
    assert km_row.diff == expected and km_row.diff.endswith("%")


def test_presets_are_named_and_unknown_preset_names_the_field():
    assert set(WEIGHT_PRESETS) == {"Low carbon", "Low latency", "Balanced"}
    assert weights_for_preset("Low carbon").carbon > weights_for_preset("Low carbon").distance
    assert weights_for_preset("Low latency").distance > weights_for_preset("Low latency").carbon
    with pytest.raises(InvalidInput) as info:
        weights_for_preset("Fastest")
    assert info.value.field == "preset" and info.value.value == "Fastest"


def test_an_infeasible_setting_shows_the_shortfall_not_a_traceback(session, tiny_swarm):
    outcome = session.compute(PlanRequest(model="llama-3.1-70b", quant="fp32", swarm_path=str(tiny_swarm)))
    assert outcome.error is None
    assert not outcome.carbon_plan.feasible
    assert outcome.comparison[0].carbon == "no"
    text = "\n".join(outcome.notices)
    plan = outcome.carbon_plan
    assert f"short by {plan.shortfall_gb:.2f} GB and {plan.shortfall_layers} layer(s)" in text
    assert "llama" in text.lower()


@pytest.mark.parametrize(("request_kwargs", "field", "value"), [
    ({"context_text": "abc"}, "context", "abc"),
    ({"context_text": "-5"}, "context", "-5"),
    ({"quant": "int3"}, "quant", "int3"),
    ({"ingress_choice": CUSTOM, "lat_text": "north", "lon_text": "8"}, "ingress.lat", "north"),
    ({"ingress_choice": CUSTOM, "lat_text": "10", "lon_text": "200"}, "ingress.lon", "200"),
    ({"swarm_path": "/no/such/peers.json"}, "swarm", "/no/such/peers.json"),
])
def test_bad_inputs_show_the_field_and_the_value(session, request_kwargs, field, value):
    outcome = session.compute(PlanRequest(**request_kwargs))
    assert outcome.error_field == field
    assert repr(value) in outcome.error
    assert outcome.vram_plan is None and outcome.comparison == ()


def test_an_unknown_model_names_the_model_field(session):
    outcome = session.compute(PlanRequest(model="no-such-model-xyz"))
    assert outcome.error_field == "model"
    assert "no-such-model-xyz" in outcome.error


def test_a_bad_peers_file_names_the_peer_field(session, tmp_path):
    path = write_peers(tmp_path / "bad.json", [{"id": "x", "lat": 95, "lon": 0, "free_vram_gb": 10}])
    outcome = session.compute(PlanRequest(swarm_path=str(path)))
    assert outcome.error_field == "peers[0].lat"


def test_a_city_ingress_moves_the_tour(session):
    frankfurt = session.compute(PlanRequest(ingress_choice="Frankfurt"))
    sydney = session.compute(PlanRequest(ingress_choice="Sydney"))
    assert sydney.ingress.name == "Sydney"
    assert (sydney.ingress.lat, sydney.ingress.lon) == next((la, lo) for n, la, lo in CITIES if n == "Sydney")
    assert sydney.carbon_plan.ingress != frankfurt.carbon_plan.ingress


def test_context_parsing_accepts_underscores_and_rejects_words():
    assert parse_context(" 8_192 ") == 8192
    with pytest.raises(InvalidInput):
        parse_context("lots")


def test_percent_diff_strings():
    assert percent_text(100.0, 60.0) == "-40.0%"
    assert percent_text(50.0, 75.0) == "+50.0%"
    assert percent_text(None, 1.0) == "—"
    assert percent_text(0.0, 0.0) == "—"


def test_pareto_entries_come_from_the_engine_sweep(session):
    outcome = session.pareto(PlanRequest())
    assert outcome.error is None and outcome.entries
    ms = [e.est_ms_per_token for e in outcome.entries]
    assert ms == sorted(ms)
    assert all(isinstance(e.weights, Weights) for e in outcome.entries)
    spots = [(e.g_co2_per_1k_tokens, e.est_ms_per_token) for e in outcome.entries]
    assert len(spots) == len(set(spots))          # one clickable point per distinct plan


def test_state_summary_is_json_and_carries_both_plans(session):
    outcome = session.compute(PlanRequest(request_id=3))
    state = json.loads(json.dumps(state_summary(outcome, 5)))
    assert state["update"] == 5 and state["request_id"] == 3
    assert state["carbon"]["g_co2_per_1k_tokens"] == outcome.carbon_plan.metrics.g_co2_per_1k_tokens
    assert state["vram"]["stage_peers"] == [s.peer_id for s in outcome.vram_plan.stages]
    assert state["peer_count"] == len(outcome.peers)


def test_the_worker_computes_only_the_latest_of_a_burst_of_requests(tmp_path):
    path = write_peers(tmp_path / "many.json", synthetic_peers(300))
    worker = PlanWorker(PlanningSession(str(path)))
    try:
        for i in range(1, 31):
            worker.submit_plan(PlanRequest(weights=Weights(i / 30, 0.3, 0.1), request_id=i))
        results = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            results.append(worker.results.get(timeout=60))
            if results[-1][1].request_id == 30:
                break
        assert results[-1][1].request_id == 30
        assert results[-1][2].error is None
        assert len(results) < 30          # superseded requests were dropped, not computed
        assert results[-1][2].request.weights == Weights(1.0, 0.3, 0.1)
    finally:
        worker.stop()


def test_live_requests_plan_over_the_coordinators_peers_at_the_file_swarms_ingress():
    from engine.carbon_values import CarbonSource
    from engine.planning.types import Peer
    from engine.swarm import Swarm

    asked = []

    def live_swarm(ingress, model):          # what EmbeddedCoordinator.swarm answers: the live peers
        asked.append(ingress)
        peers = tuple(Peer(id=f"local-{i}", lat=48.0 + i, lon=2.0 + 3 * i, free_vram_gb=0.35,
                           carbon_g_per_kwh=50.0 + 100 * i, carbon_source=CarbonSource.COUNTRY, gpu="CPU")
                      for i in range(3))
        return Swarm(ingress=ingress, peers=peers)

    request = PlanRequest(model="smollm2-135m", live=True, live_key=("local-0", "local-1", "local-2"))
    outcome = PlanningSession(live_swarm=live_swarm).compute(request)
    assert outcome.error is None
    assert asked and asked[0].name == "Frankfurt"                   # the demo swarm's ingress
    assert {p.id for p in outcome.peers} == {"local-0", "local-1", "local-2"}
    assert outcome.carbon_plan.feasible and len(outcome.carbon_plan.stages) >= 2
    assert request.planning_key() != PlanRequest(model="smollm2-135m", live=True).planning_key()

    no_coordinator = PlanningSession().compute(request)
    assert no_coordinator.error_field == "swarm" and "coordinator" in no_coordinator.error
