"""The emulated WAN delays a frame by the planner's own latency model plus its transfer time."""

from __future__ import annotations

import pytest

from engine.errors import InvalidInput
from engine.geo import haversine_km
from engine.planning.latency import one_way_ms
from engine.transport.wan import WanEmulation

FRANKFURT, ASHBURN = (50.11, 8.68), (39.04, -77.49)


def test_delay_is_the_latency_model_plus_bytes_at_the_bandwidth():
    wan = WanEmulation(FRANKFURT, bandwidth_mbps=100.0)
    latency_s = float(one_way_ms(haversine_km(*FRANKFURT, *ASHBURN))) / 1000
    assert wan.delay_s(ASHBURN, 0) == pytest.approx(latency_s)
    assert wan.delay_s(ASHBURN, 1_250_000) == pytest.approx(latency_s + 0.1)     # 10 Mbit at 100 Mbit/s
    assert wan.delay_s(None, 10**6) == 0.0                                       # place unknown: no delay


def test_bad_bandwidth_is_refused():
    with pytest.raises(InvalidInput) as caught:
        WanEmulation(FRANKFURT, bandwidth_mbps=0.0)
    assert caught.value.field == "wan_bandwidth_mbps"
