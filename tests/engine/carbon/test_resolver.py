"""CarbonResolver: explicit -> live Electricity Maps -> GCP region -> country -> world default."""

from __future__ import annotations

import math

import pytest

from engine.carbon import TOKEN_ENV, CarbonResolver
from engine.carbon_values import CarbonSource
from engine.errors import InvalidInput

PARIS = (48.8566, 2.3522)
OSLO = (59.9139, 10.7522)
SAO_PAULO = (-23.5505, -46.6333)
SANTIAGO = (-33.4489, -70.6693)
MID_ATLANTIC = (0.0, -30.0)


@pytest.fixture
def offline(tables, locator) -> CarbonResolver:
    return CarbonResolver(use_env=False, tables=tables, locator=locator)


@pytest.fixture
def live(local_api, clock, tables, locator) -> CarbonResolver:
    return CarbonResolver(
        token="tok-123", api_url=local_api.url, timeout_s=0.3, clock=clock, tables=tables, locator=locator
    )


@pytest.mark.parametrize(
    ("where", "zone"), [(PARIS, "FR"), (OSLO, "NO"), (SAO_PAULO, "BR")]
)
def test_a_coordinate_gets_its_countrys_value(offline, tables, where, zone) -> None:
    assert offline.resolve(*where) == (tables.zones_2025[zone], CarbonSource.COUNTRY)


def test_a_country_without_an_electricity_maps_zone_gets_embers_value(offline, tables) -> None:
    assert offline.resolve(*SANTIAGO) == (tables.ember_by_iso3["CHL"], CarbonSource.COUNTRY)


def test_a_point_at_sea_gets_the_world_average(offline, tables) -> None:
    value, source = offline.resolve(*MID_ATLANTIC)
    assert (value, source) == (tables.world_g_per_kwh, CarbonSource.DEFAULT)
    assert value == offline.default_g_per_kwh


def test_a_point_just_off_the_coast_gets_the_nearest_country(offline, tables) -> None:
    assert offline.resolve(53.55, 5.0) == (tables.zones_2025["NL"], CarbonSource.COUNTRY)


def test_a_named_region_wins_over_the_country(offline) -> None:
    # A peer in Frankfurt that names europe-north2 (Stockholm) gets Google's Stockholm value.
    assert offline.resolve(50.11, 8.68, region="europe-north2") == (2.73, CarbonSource.REGION)
    assert offline.resolve(50.45, 3.82, region=" Europe-West1 ") == (103.37, CarbonSource.REGION)


def test_an_unknown_region_names_field_and_value(offline) -> None:
    with pytest.raises(InvalidInput) as caught:
        offline.resolve(*PARIS, region="europe-west99")
    assert (caught.value.field, caught.value.value) == ("region", "europe-west99")
    assert "europe-west1" in caught.value.reason  # lists what is known


def test_a_region_that_is_not_a_string_is_rejected(offline) -> None:
    with pytest.raises(InvalidInput) as caught:
        offline.resolve(*PARIS, region=5)
    assert caught.value.field == "region"


def test_an_explicit_value_wins_over_everything(live, local_api) -> None:
    assert live.resolve(*PARIS, explicit=12, region="us-east1") == (12.0, CarbonSource.EXPLICIT)
    assert live.resolve(*PARIS, explicit=0.0) == (0.0, CarbonSource.EXPLICIT)
    assert local_api.requests == []  # the API is not even asked


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, True, "40", 10**400])
def test_a_bad_explicit_value_is_rejected(offline, bad) -> None:
    with pytest.raises(InvalidInput) as caught:
        offline.resolve(*PARIS, explicit=bad)
    assert caught.value.field == "carbon_g_per_kwh"


@pytest.mark.parametrize(
    ("lat", "lon", "field"),
    [(90.5, 0.0, "lat"), (-91.0, 0.0, "lat"), (0.0, 180.5, "lon"), (math.nan, 0.0, "lat"), (0.0, "8", "lon")],
)
def test_a_bad_coordinate_is_rejected(offline, lat, lon, field) -> None:
    with pytest.raises(InvalidInput) as caught:
        offline.resolve(lat, lon)
    assert caught.value.field == field


def test_the_live_value_wins_over_region_and_country(live, local_api) -> None:
    local_api.answer_json({"zone": "FR", "carbonIntensity": 58})
    assert live.resolve(*PARIS) == (58.0, CarbonSource.ELECTRICITYMAPS)
    assert live.resolve(50.45, 3.82, region="europe-west1") == (58.0, CarbonSource.ELECTRICITYMAPS)
    assert local_api.requests[0].headers["auth-token"] == "tok-123"


def test_an_unknown_region_fails_the_same_with_a_token_or_an_explicit_value(live, local_api) -> None:
    with pytest.raises(InvalidInput):
        live.resolve(*PARIS, region="mars-north1")
    with pytest.raises(InvalidInput):
        live.resolve(*PARIS, explicit=10.0, region="mars-north1")
    assert local_api.requests == []


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, b'{"error": "internal"}'), (200, b"{not json"), (200, b'{"zone": "FR"}')],
)
def test_when_the_api_fails_the_offline_chain_answers(live, local_api, tables, status, body) -> None:
    local_api.answer_raw(body, status)
    assert live.resolve(*PARIS) == (tables.zones_2025["FR"], CarbonSource.COUNTRY)
    assert live.resolve(50.45, 3.82, region="europe-west1") == (103.37, CarbonSource.REGION)


def test_when_the_api_times_out_the_offline_chain_answers(live, local_api, tables) -> None:
    local_api.delay_s = 2.0
    assert live.resolve(*OSLO) == (tables.zones_2025["NO"], CarbonSource.COUNTRY)
    assert len(local_api.requests) == 1


def test_the_token_comes_from_the_environment(monkeypatch, local_api, tables, locator) -> None:
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    resolver = CarbonResolver(api_url=local_api.url, tables=tables, locator=locator)
    assert resolver.live
    assert resolver.resolve(*PARIS) == (123.0, CarbonSource.ELECTRICITYMAPS)
    assert local_api.requests[0].headers["auth-token"] == "from-env"


def test_use_env_false_ignores_the_environment(monkeypatch, local_api, tables, locator) -> None:
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    resolver = CarbonResolver(use_env=False, api_url=local_api.url, tables=tables, locator=locator)
    assert not resolver.live
    assert resolver.resolve(*PARIS)[1] is CarbonSource.COUNTRY
    assert local_api.requests == []


def test_without_a_token_the_resolver_is_offline(monkeypatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert not CarbonResolver().live


@pytest.mark.parametrize(
    ("options", "field"),
    [({"api_url": "ftp://example.org"}, "api_url"), ({"timeout_s": 0}, "timeout_s"), ({"timeout_s": -1}, "timeout_s")],
)
def test_bad_resolver_settings_are_rejected(options, field) -> None:
    with pytest.raises(InvalidInput) as caught:
        CarbonResolver(token="t", **options)
    assert caught.value.field == field


def test_the_tables_are_read_once_per_resolver() -> None:
    resolver = CarbonResolver(use_env=False)
    assert resolver.tables is resolver.tables
    assert resolver.locator is resolver.locator
