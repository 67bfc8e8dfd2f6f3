"""Carbon over time, pure: the plan's gCO2/1k tokens along a day and the greenest window for a batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.errors import InvalidInput
from engine.planning.carbon_time import greenest_window, intensity_at, plan_timeline
from tests.engine.planning.test_replacement import FP, INGRESS, WEIGHTS, plan_on, swarm

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def hourly(values: list[float], start_h: int = 0) -> tuple[tuple[datetime, float], ...]:
    return tuple((NOW + timedelta(hours=start_h + i), v) for i, v in enumerate(values))


def test_the_value_in_force_is_the_last_point_at_or_before_the_moment() -> None:
    series = hourly([100, 200, 300])
    assert intensity_at(series, NOW + timedelta(minutes=90), 7.0) == (200, True)
    assert intensity_at(series, NOW - timedelta(hours=5), 7.0) == (100, False)
    assert intensity_at((), NOW, 7.0) == (7.0, False)


def test_the_timeline_follows_the_running_plans_grid_and_names_the_extremes() -> None:
    peers = swarm(50, 400)
    plan = plan_on(peers)
    north = hourly([50, 100, 200])
    series = {"north-a": north, "north-b": north}
    points = plan_timeline(plan, FP, peers, series, [NOW + timedelta(hours=h) for h in range(3)])
    figures = [p.plan_g_per_1k_tokens for p in points]
    assert figures[1] == pytest.approx(2 * figures[0]) and figures[2] == pytest.approx(4 * figures[0])
    assert points[0].cleanest_peer.startswith("north") and points[0].dirtiest_peer.startswith("south")
    assert points[2].dirtiest_g_per_kwh == 400 and all(p.known for p in points)


def test_a_batch_waits_for_the_clean_hours_when_that_saves() -> None:
    peers = swarm(300, 300)
    south_clean_later = hourly([300] * 6 + [30] * 6)
    series = {"south-a": south_clean_later, "south-b": south_clean_later}
    choice = greenest_window(FP, peers, INGRESS, WEIGHTS, series, NOW, tokens=2000, within_h=12)
    assert choice.start == NOW + timedelta(hours=6)
    assert {s.peer_id for s in choice.plan.stages} <= {"south-a", "south-b"}
    assert choice.saving_fraction == pytest.approx(0.9, abs=0.01) and choice.known


def test_without_forecasts_the_best_start_is_now_and_saves_nothing() -> None:
    choice = greenest_window(FP, swarm(300, 300), INGRESS, WEIGHTS, {}, NOW, tokens=2000, within_h=6)
    assert choice.start == NOW and choice.saving_g == 0 and not choice.known


def test_a_batch_that_cannot_finish_in_time_is_refused_with_its_duration() -> None:
    with pytest.raises(InvalidInput) as caught:
        greenest_window(FP, swarm(300, 300), INGRESS, WEIGHTS, {}, NOW, tokens=10**9, within_h=1)
    assert caught.value.field == "within_h" and "the batch needs" in caught.value.reason
    with pytest.raises(InvalidInput) as caught:
        greenest_window(FP, swarm(300, 300), INGRESS, WEIGHTS, {}, NOW, tokens=0, within_h=1)
    assert caught.value.field == "tokens"
