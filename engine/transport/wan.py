"""Emulated WAN: how long a frame between two places would take, for swarms running on one machine.

A local runner placed at a city sends each frame after the one-way latency the planner's own model
gives for the great-circle distance (engine.planning.latency: one source of truth) plus the time the
frame's bytes take at `bandwidth_mbps`. On for local runners started at cities, off for real ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import InvalidInput
from engine.geo import haversine_km
from engine.planning.latency import one_way_ms

DEFAULT_BANDWIDTH_MBPS = 100.0
"""One flow's throughput across a long-haul path; a data centre uplink is faster, a home link slower."""

Location = tuple[float, float]          # (lat, lon) degrees


@dataclass(frozen=True)
class WanEmulation:
    here: Location
    bandwidth_mbps: float = DEFAULT_BANDWIDTH_MBPS

    def __post_init__(self) -> None:
        lat, lon = self.here
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise InvalidInput("wan.here", self.here, "expected (lat, lon) in degrees")
        if not 0 < self.bandwidth_mbps < 1e7:
            raise InvalidInput("wan_bandwidth_mbps", self.bandwidth_mbps, "expected a bandwidth > 0 Mbit/s")

    def delay_s(self, there: Location | None, num_bytes: int) -> float:
        """One-way delay of a frame of `num_bytes` from here to `there` (0 when `there` is unknown)."""
        if there is None:
            return 0.0
        return one_way_s(self.here, there) + num_bytes * 8 / (self.bandwidth_mbps * 1e6)


def one_way_s(a: Location, b: Location) -> float:
    return float(one_way_ms(haversine_km(a[0], a[1], b[0], b[1]))) / 1000.0
