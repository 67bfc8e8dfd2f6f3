"""Electricity Maps, GB National Grid and WattTime clients against one fake server on 127.0.0.1 that
answers in each API's documented format, including refusals, errors, slow answers and rate limits."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.carbon import CarbonResolver
from engine.carbon.electricitymaps import ElectricityMapsClient
from engine.carbon.nationalgrid import NationalGridClient, in_great_britain, nearest_region
from engine.carbon.watttime import WattTimeClient
from engine.carbon_values import CarbonSource, SignalKind
from engine.swarm import parse_swarm
from tests.engine.carbon.conftest import FakeClock
from tests.engine.carbon.fake_grids import FakeGrids, start_fake_grids

LONDON = (51.5072, -0.1276)
EDINBURGH = (55.9533, -3.1883)
BELFAST = (54.5973, -5.9301)
PARIS = (48.8566, 2.3522)
BERLIN = (52.52, 13.405)
SAN_FRANCISCO = (37.77, -122.42)


@pytest.fixture
def grids(monkeypatch: pytest.MonkeyPatch) -> FakeGrids:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    server = start_fake_grids()
    # Germany's intensity climbs by 10 g each hour, so times and horizons are visible in the values.
    start = server.now
    server.set_zone("DE", *BERLIN, lambda at: 300 + 10 * (at - start).total_seconds() / 3600)
    server.set_zone("FR", *PARIS, 40, marginal=400)
    server.set_zone("GB", 52.5, -1.5, 180)
    server.set_zone("GB-13", *LONDON, 210)
    server.set_zone("CAISO_NORTH", *SAN_FRANCISCO, 250, marginal=453.59237)  # 1000 lbs/MWh
    yield server
    server.stop()


def em(grids: FakeGrids, clock: FakeClock, **options) -> ElectricityMapsClient:
    return ElectricityMapsClient(grids.token, api_url=grids.url + "/em", clock=clock,
                                 wall_clock=lambda: grids.now, **options)


def ng(grids: FakeGrids, clock: FakeClock, **options) -> NationalGridClient:
    return NationalGridClient(grids.url + "/ng", clock=clock, wall_clock=lambda: grids.now, **options)


def wt(grids: FakeGrids, clock: FakeClock, password: str = "wt-pass") -> WattTimeClient:
    return WattTimeClient("wt-user", password, api_url=grids.url + "/wt", clock=clock,
                          wall_clock=lambda: grids.now)


# --- Electricity Maps ---------------------------------------------------------------------------------

def test_electricitymaps_latest_says_source_kind_time_and_zone(grids, clock) -> None:
    signal = em(grids, clock).latest(*BERLIN)
    assert (signal.g_per_kwh, signal.source, signal.kind, signal.detail) == (
        300.0, CarbonSource.ELECTRICITYMAPS, SignalKind.AVERAGE, "DE")
    assert signal.at == grids.now and signal.horizon_h == 0.0


def test_electricitymaps_history_is_the_past_day_oldest_first(grids, clock) -> None:
    series = em(grids, clock).history(*BERLIN)
    assert len(series.points) == 24
    assert [p.horizon_h for p in series.points] == [float(-h) for h in range(24, 0, -1)]
    assert series.points[0].g_per_kwh == 300 - 240 and series.points[-1].g_per_kwh == 290


def test_electricitymaps_forecast_is_the_coming_day(grids, clock) -> None:
    series = em(grids, clock).forecast(*BERLIN)
    assert [p.horizon_h for p in series.points] == [float(h) for h in range(1, 25)]
    assert series.points[-1].g_per_kwh == 300 + 240


def test_a_plan_without_forecasts_gets_a_clear_note_and_latest_keeps_working(grids, clock) -> None:
    grids.forecast_allowed = False
    client = em(grids, clock)
    series = client.forecast(*BERLIN)
    assert series.points == ()
    assert "paid Electricity Maps plan" in series.note and "HTTP 403" in series.note
    assert "does not give access to forecasts" in series.note   # the API's own words
    assert client.latest(*BERLIN).g_per_kwh == 300.0             # the refusal did not rest the API


def test_a_rate_limit_rests_the_api_for_its_retry_after(grids, clock) -> None:
    client = em(grids, clock, failure_pause_s=5.0)
    grids.rate_limited["em"] = 1
    grids.retry_after = "120"
    assert client.latest(*BERLIN) is None
    clock.now_s += 100.0
    assert client.latest(*PARIS) is None          # still resting: nothing sent
    assert grids.count("em") == 1
    clock.now_s += 21.0
    assert client.latest(*PARIS).g_per_kwh == 40.0
    assert grids.count("em") == 2


def test_repeated_failures_back_off_longer_each_time_and_a_success_resets(grids, clock) -> None:
    client = em(grids, clock, failure_pause_s=10.0)
    grids.forced["em"] = (503, b'{"message": "maintenance"}')
    for expected_pause in (10.0, 20.0, 40.0):
        assert client.latest(*BERLIN) is None
        assert client._http.paused_for_s() == expected_pause
        clock.now_s += expected_pause
    del grids.forced["em"]
    assert client.latest(*BERLIN).g_per_kwh == 300.0
    grids.forced["em"] = (503, b"{}")
    clock.now_s += 1000.0                          # past the cache
    assert client.latest(*BERLIN) is None
    assert client._http.paused_for_s() == 10.0     # back to the first step


def test_a_slow_answer_gives_up_within_the_timeout(grids, clock) -> None:
    grids.delay_s = 1.5
    client = em(grids, clock, timeout_s=0.2)
    assert client.latest(*BERLIN) is None
    assert "timed out" in client.forecast(*BERLIN).note or "resting" in client.forecast(*BERLIN).note


# --- GB National Grid ---------------------------------------------------------------------------------

def test_great_britain_is_covered_but_not_northern_ireland_or_paris() -> None:
    assert in_great_britain(*LONDON) and in_great_britain(*EDINBURGH)
    assert not in_great_britain(*BELFAST) and not in_great_britain(*PARIS)
    assert nearest_region(*LONDON) == 13 and nearest_region(*EDINBURGH) == 2


def test_a_london_peer_gets_the_london_regional_value(grids, clock) -> None:
    signal = ng(grids, clock).latest(*LONDON)
    assert (signal.g_per_kwh, signal.source, signal.kind) == (210.0, CarbonSource.NATIONALGRID, SignalKind.AVERAGE)
    assert signal.detail == "GB region 13 London" and signal.at == grids.now


def test_the_national_grid_forecast_is_48_hours_half_hourly(grids, clock) -> None:
    series = ng(grids, clock).forecast(*EDINBURGH)
    assert len(series.points) == 96
    assert series.points[1].at - series.points[0].at == timedelta(minutes=30)
    assert series.points[-1].horizon_h == 47.5
    assert ng(grids, clock).history(*EDINBURGH).points[0].horizon_h == -24.0


def test_when_the_regional_call_fails_the_national_value_answers(grids, clock) -> None:
    grids.failing_prefix = "/regional"
    signal = ng(grids, clock).latest(*LONDON)
    assert signal is not None and signal.detail == "GB national" and signal.g_per_kwh == 180.0


def test_outside_great_britain_the_national_grid_is_not_asked(grids, clock) -> None:
    client = ng(grids, clock)
    assert client.latest(*PARIS) is None
    assert "Great Britain only" in client.forecast(*PARIS).note
    assert grids.count("ng") == 0


# --- WattTime -----------------------------------------------------------------------------------------

def test_watttime_logs_in_and_gives_the_moer_in_grams_per_kwh(grids, clock) -> None:
    client = wt(grids, clock)
    signal = client.latest(*SAN_FRANCISCO)
    assert (signal.source, signal.kind, signal.detail) == (CarbonSource.WATTTIME, SignalKind.MARGINAL, "CAISO_NORTH")
    assert signal.g_per_kwh == pytest.approx(453.59, abs=0.05)   # 1000 lbs/MWh
    assert client.signal_index(*SAN_FRANCISCO) == 42.0
    assert len(client.forecast(*SAN_FRANCISCO).points) == 24 * 12
    assert grids.requests.count(("wt", "/login")) == 1           # one token for every call


def test_an_expired_watttime_token_is_renewed_once(grids, clock) -> None:
    client = wt(grids, clock)
    client.latest(*SAN_FRANCISCO)
    client._token = ("expired", clock.now_s + 999)
    clock.now_s += 1000.0                                         # past the cache too
    client._token = ("expired", clock.now_s + 999)
    assert client.latest(*SAN_FRANCISCO) is not None
    assert grids.requests.count(("wt", "/login")) == 2


def test_a_wrong_watttime_password_gives_no_value_and_rests(grids, clock) -> None:
    client = wt(grids, clock, password="wrong")
    assert client.latest(*SAN_FRANCISCO) is None
    assert client.latest(*SAN_FRANCISCO) is None
    assert grids.requests.count(("wt", "/login")) == 1


# --- the resolver over all of them --------------------------------------------------------------------

@pytest.fixture
def everything(grids, clock, tables, locator) -> CarbonResolver:
    return CarbonResolver(token=grids.token, api_url=grids.url + "/em", nationalgrid_url=grids.url + "/ng",
                          watttime_login=grids.watttime_login, watttime_url=grids.url + "/wt",
                          timeout_s=0.5, clock=clock, tables=tables, locator=locator, use_env=False)


def test_the_user_picks_average_or_marginal(everything) -> None:
    average = everything.signal(*SAN_FRANCISCO)
    marginal = everything.signal(*SAN_FRANCISCO, kind="marginal")
    assert (average.source, average.kind, average.g_per_kwh) == (CarbonSource.ELECTRICITYMAPS, SignalKind.AVERAGE, 250)
    assert (marginal.source, marginal.kind) == (CarbonSource.WATTTIME, SignalKind.MARGINAL)


def test_without_a_marginal_source_the_average_answers_labelled_average(grids, clock, tables, locator) -> None:
    resolver = CarbonResolver(use_env=False, tables=tables, locator=locator)
    signal = resolver.signal(*PARIS, kind=SignalKind.MARGINAL)
    assert (signal.source, signal.kind) == (CarbonSource.COUNTRY, SignalKind.AVERAGE)
    assert "offline" in signal.detail and signal.at is None
    assert "WATTTIME_USERNAME" in resolver.forecast(*PARIS, kind="marginal").note


def test_great_britain_falls_to_the_national_grid_when_electricity_maps_fails(grids, everything) -> None:
    grids.forced["em"] = (500, b"{}")
    assert everything.signal(*LONDON).source is CarbonSource.NATIONALGRID
    assert everything.forecast(*LONDON).points[0].source is CarbonSource.NATIONALGRID


def test_when_every_api_fails_planning_still_gets_labelled_offline_values(grids, everything) -> None:
    for api in ("em", "ng", "wt"):
        grids.forced[api] = (502, b"<html>bad gateway</html>")
    swarm = parse_swarm({"ingress": {"lat": 50, "lon": 8},
                         "peers": [{"id": "london", "lat": LONDON[0], "lon": LONDON[1], "free_vram_gb": 20},
                                   {"id": "berlin", "lat": BERLIN[0], "lon": BERLIN[1], "free_vram_gb": 20}]},
                        resolver=everything, signal=SignalKind.MARGINAL)
    assert [p.carbon_source for p in swarm.peers] == [CarbonSource.COUNTRY, CarbonSource.COUNTRY]
    assert all(s.source.offline for s in swarm.signals)


def test_the_api_urls_and_credentials_come_from_the_environment(grids, monkeypatch, tables, locator) -> None:
    monkeypatch.setenv("ELECTRICITYMAPS_TOKEN", grids.token)
    monkeypatch.setenv("ELECTRICITYMAPS_API_URL", grids.url + "/em")
    monkeypatch.setenv("WATTTIME_USERNAME", "wt-user")
    monkeypatch.setenv("WATTTIME_PASSWORD", "wt-pass")
    monkeypatch.setenv("WATTTIME_API_URL", grids.url + "/wt")
    resolver = CarbonResolver(tables=tables, locator=locator)
    assert resolver.signal(*PARIS).source is CarbonSource.ELECTRICITYMAPS
    assert resolver.signal(*PARIS, kind="marginal").g_per_kwh == pytest.approx(400.0, abs=0.05)
