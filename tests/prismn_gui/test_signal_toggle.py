"""The average / marginal toggle through the view-model, with WattTime played by the fake server."""

from __future__ import annotations

import pytest

from prismn_gui.viewmodel import PlanningSession, PlanRequest
from tests.engine.carbon.fake_grids import start_fake_grids


def test_without_a_marginal_source_the_table_says_the_values_are_yearly_averages() -> None:
    outcome = PlanningSession().compute(PlanRequest(signal="marginal"))
    assert outcome.error is None
    signals = [row.signal for row in outcome.stage_rows["carbon"]]
    assert signals and all(s.split()[1] == "avg" for s in signals)      # labelled average, not marginal
    assert all(s.endswith("yr") or s.startswith("stated") for s in signals)


def test_the_marginal_toggle_plans_with_watttime_and_the_table_shows_it(monkeypatch) -> None:
    grids = start_fake_grids()
    try:
        grids.set_zone("EU", 50.0, 8.0, 300, marginal=500)
        for key, value in {"WATTTIME_USERNAME": "wt-user", "WATTTIME_PASSWORD": "wt-pass",
                           "WATTTIME_API_URL": grids.url + "/wt", "NO_PROXY": "127.0.0.1",
                           "no_proxy": "127.0.0.1"}.items():
            monkeypatch.setenv(key, value)
        session = PlanningSession()
        average = session.compute(PlanRequest())
        marginal = session.compute(PlanRequest(signal="marginal"))
        assert PlanRequest(signal="marginal").planning_key() != PlanRequest().planning_key()
        # WattTime answers for every peer without a stated value; the baseline's stages show it.
        watttime = [s for s in marginal.signals.values() if s.source.value == "watttime"]
        assert len(watttime) >= len(marginal.signals) - 3
        assert all(s.kind.value == "marginal" and s.g_per_kwh == pytest.approx(500, abs=0.1) for s in watttime)
        assert any(row.signal.startswith("WattTime marg") for row in marginal.stage_rows["vram"])
        assert not any(s.source.value == "watttime" for s in average.signals.values())
        # At 500 g everywhere, the carbon plan goes to a peer that states its own (clean) value.
        assert all(row.signal == "stated marg" for row in marginal.stage_rows["carbon"])
    finally:
        grids.stop()
