"""The app's targets without a display: fields -> engine targets -> plans, binding and certificate."""

from __future__ import annotations

import pytest

from prismn_gui.targets import TargetsRequest, disallowed_ids, swarm_countries
from prismn_gui.viewmodel import PlanningSession, PlanRequest


@pytest.fixture(scope="module")
def session():
    return PlanningSession()


def test_the_demo_swarm_knows_its_countries_and_the_filter_rules_peers_out(session):
    outcome = session.compute(PlanRequest(model="llama-3.1-70b",
                                          targets=TargetsRequest(allow_countries=("DE", "FR"))))
    assert outcome.error is None
    countries = swarm_countries(outcome.peers)
    assert {"DE", "FR", "US"} <= set(countries)
    allowed = {p.id for p in outcome.peers if p.country in ("DE", "FR")}
    for plan in (outcome.vram_plan, outcome.carbon_plan):
        assert plan.feasible and {s.peer_id for s in plan.stages} <= allowed
    out = disallowed_ids(outcome.peers, outcome.request.targets)
    assert out == {p.id for p in outcome.peers} - allowed


def test_an_unreachable_target_shows_the_binding_constraint_where_the_plan_would_be(session):
    request = PlanRequest(model="llama-3.1-70b",
                          targets=TargetsRequest(max_ms_text="5", allow_countries=("DE", "FR")))
    outcome = session.compute(request)
    assert outcome.error is None and not outcome.carbon_plan.feasible
    assert outcome.notices == (
        "Carbon+distance: infeasible: " + outcome.carbon_plan.binding["message"],)
    assert "the lowest ms/token found with peers in DE, FR is" in outcome.notices[0]


def test_exact_gives_a_certificate_and_bad_fields_are_named(session):
    from prismn_gui.targets import certificate_text

    outcome = session.compute(PlanRequest(model="llama-3.1-70b",
                                          targets=TargetsRequest(max_peers_text="4", exact=True)))
    assert outcome.error is None and outcome.carbon_plan.certificate is not None
    assert certificate_text(outcome.carbon_plan).startswith("greedy plan within ")
    bad = session.compute(PlanRequest(targets=TargetsRequest(max_ms_text="fast")))
    assert bad.error_field == "max_ms_per_token"
    bad = session.compute(PlanRequest(targets=TargetsRequest(max_peers_text="0")))
    assert bad.error_field == "max_peers"
