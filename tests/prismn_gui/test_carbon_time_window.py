"""The "Carbon 24 h" tab in the real window under Xvfb, fed by the fake grid APIs on 127.0.0.1.

Electricity Maps (fake) serves SYNTHETIC diurnal intensities around the real clock; the app plans
the demo swarm with them, the tab draws history + forecast; then the grid under the running plan's
peers turns dirty, "Check now" shows a migration proposal (saving, cost, payback), "Migrate" puts it
in the history. Screenshots: artifacts/screenshots/carbon_timeline.png, carbon_migration_proposal.png.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from tests.engine.carbon.fake_grids import start_fake_grids
from tests.prismn_gui.conftest import click, running_app, screenshot, wait_for_state

pytestmark = [pytest.mark.gui, pytest.mark.slow]

# Zones near demo-swarm cities, each with a SYNTHETIC day: solar dips, evening peaks.
ZONES = {
    "FR": (48.86, 2.35, 60, 20, 0), "DE": (50.11, 8.68, 380, 80, 180), "ES": (40.42, -3.70, 250, 40, 180),
    "GB": (51.51, -0.13, 200, 50, 60), "SE": (59.33, 18.07, 40, 10, 0), "US": (39.04, -77.49, 380, 60, 80),
    "PL": (52.23, 21.01, 700, 50, 60), "IT": (45.46, 9.19, 330, 50, 140),
}


def diurnal(base: float, evening: float, solar: float):
    def value(at: datetime) -> float:
        hour = at.hour + at.minute / 60
        sun = max(0.0, math.sin(math.pi * (hour - 6) / 14)) if 6 <= hour <= 20 else 0.0
        return base + evening * math.cos(2 * math.pi * (hour - 19) / 24) - solar * sun
    return value


@pytest.fixture(scope="module")
def carbon_app(display, tmp_path_factory):
    grids = start_fake_grids()
    grids.now = datetime.now(UTC)
    for name, (lat, lon, base, evening, solar) in ZONES.items():
        grids.set_zone(name, lat, lon, diurnal(base, evening, solar))
    env = {"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1", "ELECTRICITYMAPS_TOKEN": grids.token,
           "ELECTRICITYMAPS_API_URL": grids.url + "/em"}
    try:
        with running_app(display, tmp_path_factory.mktemp("carbon_gui"), env, timeout_s=90) as app:
            yield {**app, "grids": grids}
    finally:
        grids.stop()


def test_the_timeline_then_a_proposal_when_the_running_grid_turns_dirty(carbon_app):
    app = carbon_app
    state_file = app["state_file"]
    first = app["first"]
    assert first["carbon"]["feasible"]
    click(app, "tab_carbon 24 h")
    shown = wait_for_state(state_file, lambda s: s["tab"] == "Carbon 24 h" and s["carbon_time"]["timeline_known"]
                           and "carbon_check_now" in s["widgets"], timeout_s=60, proc=app["proc"])
    assert shown["carbon_time"]["timeline_points"] == 49          # 24 h every 30 min, now in the middle
    assert shown["carbon_time"]["series_peers"] > 0
    click(app, "carbon_find_window")
    found = wait_for_state(state_file, lambda s: s["carbon_time"]["window"].startswith("Start"), timeout_s=60,
                           proc=app["proc"])
    assert "g now" in found["carbon_time"]["window"] and "Estimate." in found["carbon_time"]["window"]
    screenshot(app, "carbon_timeline.png")

    # The grid under the running plan's peers turns ten times dirtier than anything else.
    for stage in shown["carbon_time"]["running_stages"]:
        app["grids"].set_zone(f"dirty-{stage['peer_id']}", stage["lat"], stage["lon"], 2500)
    click(app, "carbon_check_now")
    proposed = wait_for_state(state_file, lambda s: s["carbon_time"]["proposal_pending"], timeout_s=60,
                              proc=app["proc"])
    text = proposed["carbon_time"]["proposal"]
    assert text.startswith("Proposal: move to") and "saves" in text and "payback" in text and "cost" in text
    screenshot(app, "carbon_migration_proposal.png")

    click(app, "carbon_migrate")
    moved = wait_for_state(state_file, lambda s: s["carbon_time"]["history"], timeout_s=30, proc=app["proc"])
    assert "accepted" in moved["carbon_time"]["history"][0]
    assert not moved["carbon_time"]["proposal_pending"]
