"""The live Electricity Maps client against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import logging

import pytest

from engine.carbon.electricitymaps import LATEST_PATH, ElectricityMapsClient
from tests.engine.carbon.conftest import FakeClock
from tests.engine.carbon.local_api import LocalElectricityMaps

TOKEN = "test-token-5f3a"


def client(api: LocalElectricityMaps, clock: FakeClock, **options) -> ElectricityMapsClient:
    return ElectricityMapsClient(TOKEN, api_url=api.url, clock=clock, **options)


def test_a_good_answer_gives_the_value_and_sends_the_token(local_api, clock) -> None:
    local_api.answer_json({"zone": "FR", "carbonIntensity": 42, "isEstimated": False})
    assert client(local_api, clock).latest_g_per_kwh(48.8566, 2.3522) == 42.0
    [seen] = local_api.requests
    assert seen.path == LATEST_PATH
    assert seen.headers["auth-token"] == TOKEN
    assert seen.query == {"lat": ["48.86"], "lon": ["2.35"]}  # rounded to ~1 km, the cache key


def test_a_trailing_slash_in_the_api_url_is_harmless(local_api, clock) -> None:
    api_client = ElectricityMapsClient(TOKEN, api_url=local_api.url + "/", clock=clock)
    assert api_client.latest_g_per_kwh(50.0, 8.0) == 123.0
    assert local_api.requests[0].path == LATEST_PATH


def test_a_second_call_nearby_is_served_from_the_cache(local_api, clock) -> None:
    api_client = client(local_api, clock, cache_ttl_s=900.0)
    assert api_client.latest_g_per_kwh(50.1109, 8.6821) == 123.0
    local_api.answer_json({"carbonIntensity": 999})
    assert api_client.latest_g_per_kwh(50.1112, 8.6818) == 123.0  # same rounded coordinate
    assert len(local_api.requests) == 1
    assert api_client.latest_g_per_kwh(48.0, 2.0) == 999.0  # another place asks again
    assert len(local_api.requests) == 2


def test_the_cache_expires_after_its_ttl(local_api, clock) -> None:
    api_client = client(local_api, clock, cache_ttl_s=900.0)
    api_client.latest_g_per_kwh(50.0, 8.0)
    local_api.answer_json({"carbonIntensity": 77.5})
    clock.now_s += 899.0
    assert api_client.latest_g_per_kwh(50.0, 8.0) == 123.0
    clock.now_s += 2.0
    assert api_client.latest_g_per_kwh(50.0, 8.0) == 77.5
    assert len(local_api.requests) == 2


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b'{"error": "boom"}'),
        (401, b'{"error": "bad token"}'),
        (404, b'{"error": "no zone here"}'),
        (200, b"<html>not json</html>"),
        (200, b'{"zone": "DE"}'),                              # field missing
        (200, b'{"zone": "DE", "carbonIntensity": null}'),
        (200, b'{"zone": "DE", "carbonIntensity": -5}'),
        (200, b'{"zone": "DE", "carbonIntensity": "300"}'),
        (200, b'{"zone": "DE", "carbonIntensity": true}'),
        (200, b'{"zone": "DE", "carbonIntensity": NaN}'),
        (200, b'{"zone": "DE", "carbonIntensity": 1' + b"0" * 400 + b"}"),
        (200, b'[1, 2, 3]'),
    ],
)
def test_any_bad_answer_gives_none_and_a_warning(local_api, clock, caplog, status, body) -> None:
    local_api.answer_raw(body, status)
    with caplog.at_level(logging.WARNING, logger="engine.carbon.electricitymaps"):
        assert client(local_api, clock).latest_g_per_kwh(50.0, 8.0) is None
    assert "Electricity Maps" in caplog.text
    assert TOKEN not in caplog.text


def test_a_timeout_gives_none_quickly(local_api, clock, caplog) -> None:
    local_api.delay_s = 2.0
    with caplog.at_level(logging.WARNING, logger="engine.carbon.electricitymaps"):
        assert client(local_api, clock, timeout_s=0.2).latest_g_per_kwh(50.0, 8.0) is None
    assert "timed out" in caplog.text


def test_an_unreachable_endpoint_gives_none(clock) -> None:
    # Port 9 (discard) on 127.0.0.1 is closed on a test machine: connection refused.
    api_client = ElectricityMapsClient(TOKEN, api_url="http://127.0.0.1:9", timeout_s=1.0, clock=clock)
    assert api_client.latest_g_per_kwh(50.0, 8.0) is None


def test_after_a_server_error_the_api_rests_for_every_coordinate_then_is_tried_again(local_api, clock) -> None:
    api_client = client(local_api, clock, failure_pause_s=60.0)
    local_api.answer_raw(b"down", 503)
    assert api_client.latest_g_per_kwh(50.0, 8.0) is None
    local_api.answer_json({"carbonIntensity": 55})
    assert api_client.latest_g_per_kwh(10.0, 10.0) is None  # another place, but still paused
    assert len(local_api.requests) == 1
    clock.now_s += 61.0
    assert api_client.latest_g_per_kwh(10.0, 10.0) == 55.0
    assert api_client.latest_g_per_kwh(50.0, 8.0) == 55.0  # the failure is not cached for long
    assert len(local_api.requests) == 3


def test_a_point_outside_every_zone_does_not_pause_other_coordinates(local_api, clock) -> None:
    api_client = client(local_api, clock)
    local_api.answer_raw(b'{"error": "no zone"}', 404)
    assert api_client.latest_g_per_kwh(0.0, -30.0) is None
    local_api.answer_json({"carbonIntensity": 12})
    assert api_client.latest_g_per_kwh(59.9, 10.7) == 12.0


def test_a_token_http_cannot_carry_gives_no_value_instead_of_an_exception(local_api, clock) -> None:
    # A token pasted with a non-latin-1 character (an en dash, a euro sign) made http.client
    # raise UnicodeEncodeError, which escaped the client and broke planning.
    api_client = ElectricityMapsClient("t€st–token", api_url=local_api.url, clock=clock)
    assert api_client.latest_g_per_kwh(50.0, 8.0) is None
    assert local_api.requests == []
