"""GB National Grid ESO carbon-intensity API (api.carbonintensity.org.uk): free, no key, Great Britain only.

Documented answers, gCO2/kWh, half-hourly periods:
  national  GET /intensity                     {"data": [{"from": "2026-12-02T10:30Z", "to": "..",
                                                          "intensity": {"forecast": 186, "actual": 190,
                                                                        "index": "moderate"}}]}
            GET /intensity/{from}/fw48h        same "data" list, 96 periods ahead ("actual" null)
            GET /intensity/{from}/pt24h        same "data" list, 48 periods back
  regional  GET /regional/regionid/{id}        {"data": [{"regionid": 13, "shortname": "London",
                                                          "data": [{"from", "to", "intensity": {..}}]}]}
            GET /regional/intensity/{from}/fw48h/regionid/{id}   {"data": {"regionid": 13, .., "data": [..]}}
            GET /regional/intensity/{from}/pt24h/regionid/{id}   the same shape, 24 h back
Regional values are forecasts only (the API publishes no regional actuals). A peer is put in the GB
region whose centre is nearest (an approximation: the API maps postcodes, Prismn has coordinates);
when the regional call fails the national value answers. Northern Ireland is not on the GB grid.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import requests

from engine.carbon.http import DEFAULT_FAILURE_PAUSE_S, DEFAULT_TIMEOUT_S, PoliteJson, usable_intensity
from engine.carbon_values import CarbonSeries, CarbonSignal, CarbonSource, SignalKind, utc
from engine.geo import haversine_km

DEFAULT_API_URL = "https://api.carbonintensity.org.uk"
API_URL_ENV = "CARBONINTENSITY_API_URL"
# Periods are half-hourly: a 10 min cache follows every change and spares a free API.
DEFAULT_CACHE_TTL_S = 600.0

# GB regions 1-14 of the API (DNO areas) and a rough centre of each (lat, lon), chosen by hand.
REGIONS: dict[int, tuple[str, float, float]] = {
    1: ("North Scotland", 57.5, -4.4),
    2: ("South Scotland", 55.7, -3.6),
    3: ("North West England", 53.9, -2.6),
    4: ("North East England", 54.8, -1.6),
    5: ("Yorkshire", 53.8, -1.2),
    6: ("North Wales & Merseyside", 53.1, -3.2),
    7: ("South Wales", 51.7, -3.5),
    8: ("West Midlands", 52.5, -2.1),
    9: ("East Midlands", 52.9, -1.0),
    10: ("East England", 52.4, 0.8),
    11: ("South West England", 50.8, -3.8),
    12: ("South England", 51.1, -1.3),
    13: ("London", 51.5, -0.12),
    14: ("South East England", 51.2, 0.8),
}

log = logging.getLogger(__name__)


def in_great_britain(lat: float, lon: float) -> bool:
    """Inside a box around Great Britain, Northern Ireland (not on the GB grid) left out."""
    if not (49.8 <= lat <= 60.9 and -8.7 <= lon <= 1.9):
        return False
    northern_ireland = 54.0 <= lat <= 55.35 and lon <= -5.4
    ireland = lat < 55.4 and lon < -5.8
    return not (northern_ireland or ireland)


def nearest_region(lat: float, lon: float) -> int:
    return min(REGIONS, key=lambda rid: haversine_km(lat, lon, REGIONS[rid][1], REGIONS[rid][2]))


class NationalGridClient:
    def __init__(
        self,
        api_url: str = DEFAULT_API_URL,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
        failure_pause_s: float = DEFAULT_FAILURE_PAUSE_S,
        clock: Callable[[], float] = time.monotonic,
        session: requests.Session | None = None,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._http = PoliteJson(
            "GB National Grid", api_url, timeout_s=timeout_s, cache_ttl_s=cache_ttl_s,
            failure_pause_s=failure_pause_s, clock=clock, session=session, logger=log,
        )
        self._now = wall_clock

    @staticmethod
    def covers(lat: float, lon: float) -> bool:
        return in_great_britain(lat, lon)

    def latest(self, lat: float, lon: float) -> CarbonSignal | None:
        if not self.covers(lat, lon):
            return None
        region = nearest_region(lat, lon)
        now = self._now()
        reply = self._http.get(f"/regional/regionid/{region}", where=f"region {region}", http_errors_local=True)
        if reply.ok:
            points = _periods(_regional_rows(reply.payload), now, _region_label(region))
            if points:
                return points[0]
        reply = self._http.get("/intensity", where="national")
        if reply.ok:
            points = _periods(_rows(reply.payload), now, "GB national")
            if points:
                return points[0]
        return None

    def forecast(self, lat: float, lon: float) -> CarbonSeries:
        """Half-hourly, the next 48 h, for the peer's region (national when the region fails)."""
        return self._series(lat, lon, "fw48h")

    def history(self, lat: float, lon: float) -> CarbonSeries:
        """Half-hourly, the past 24 h."""
        return self._series(lat, lon, "pt24h")

    def _series(self, lat: float, lon: float, span: str) -> CarbonSeries:
        if not self.covers(lat, lon):
            return CarbonSeries(note="GB National Grid covers Great Britain only")
        now = self._now()
        start = _period_start(now, span)
        region = nearest_region(lat, lon)
        reply = self._http.get(f"/regional/intensity/{start}/{span}/regionid/{region}", where=f"region {region}",
                               http_errors_local=True)
        if reply.ok:
            points = _periods(_regional_rows(reply.payload), now, _region_label(region))
            if points:
                return CarbonSeries(points)
        national = self._http.get(f"/intensity/{start}/{span}", where="national")
        if national.ok:
            points = _periods(_rows(national.payload), now, "GB national")
            if points:
                return CarbonSeries(points, "" if reply.ok else f"regional series failed ({reply.problem})")
        return CarbonSeries(note=f"GB National Grid {span} unavailable: {national.problem or 'no usable periods'}")


def _period_start(now: datetime, span: str) -> str:
    """The API's {from} path part: the start of the current half-hour period, e.g. '2026-12-02T10:30Z'
    (fw48h runs forward from it, pt24h back). Flooring to the period lets the cache serve the period."""
    now = now.astimezone(UTC)
    return now.replace(minute=now.minute - now.minute % 30, second=0, microsecond=0).strftime("%Y-%m-%dT%H:%MZ")


def _region_label(region: int) -> str:
    return f"GB region {region} {REGIONS[region][0]}"


def _rows(payload: object) -> list:
    data = payload.get("data") if isinstance(payload, dict) else None
    return data if isinstance(data, list) else []


def _regional_rows(payload: object) -> list:
    """The periods of a regional answer: "data" is a list of regions (current) or one region (series)."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if isinstance(data, list):
        data = data[0] if data else None
    inner = data.get("data") if isinstance(data, dict) else None
    return inner if isinstance(inner, list) else []


def _periods(rows: list, now: datetime, label: str) -> tuple[CarbonSignal, ...]:
    """Usable periods as signals at their start, oldest first; `actual` wins over `forecast` when given."""
    points = []
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("intensity"), dict):
            continue
        intensity = row["intensity"]
        value = usable_intensity(intensity.get("actual"))
        if value is None:
            value = usable_intensity(intensity.get("forecast"))
        try:
            start = utc(row["from"]) if isinstance(row.get("from"), str) else None
        except ValueError:
            start = None
        if value is None or start is None:
            continue
        points.append(CarbonSignal(value, CarbonSource.NATIONALGRID, SignalKind.AVERAGE, start,
                                   round((start - now).total_seconds() / 3600.0, 3), label))
    points.sort(key=lambda s: s.at)
    return tuple(points)

