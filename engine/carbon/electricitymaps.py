"""Electricity Maps API v3: latest, past 24 h and forecast grid-average carbon intensity, best effort.

Documented answers (header `auth-token: <token>`, query `lat=..&lon=..`), gCO2eq/kWh, lifecycle:
  GET /v3/carbon-intensity/latest    {"zone": "DE", "carbonIntensity": 302, "datetime": "2026-..Z", ...}
  GET /v3/carbon-intensity/history   {"zone": "DE", "history": [{"carbonIntensity": .., "datetime": ..}, ..]}
  GET /v3/carbon-intensity/forecast  {"zone": "DE", "forecast": [{"carbonIntensity": .., "datetime": ..}, ..]}
The forecast needs a paid plan: a free token gets 401/403 there, reported as a clear note while latest
and history keep working. Every failure gives None / an empty series with a note, never an exception:
a planning request must never fail because a carbon API is down. The token is never logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import requests

from engine.carbon.http import DEFAULT_FAILURE_PAUSE_S, DEFAULT_TIMEOUT_S, PoliteJson, Reply, usable_intensity
from engine.carbon_values import CarbonSeries, CarbonSignal, CarbonSource, SignalKind, utc

DEFAULT_API_URL = "https://api.electricitymap.org"
API_URL_ENV = "ELECTRICITYMAPS_API_URL"
LATEST_PATH = "/v3/carbon-intensity/latest"
HISTORY_PATH = "/v3/carbon-intensity/history"
FORECAST_PATH = "/v3/carbon-intensity/forecast"
# Electricity Maps publishes hourly values, so a 15 min cache loses little and spares the quota.
DEFAULT_CACHE_TTL_S = 900.0
# Two decimals is ~1 km: far finer than any grid zone, coarse enough to share answers between
# peers in the same data centre.
COORDINATE_DECIMALS = 2

log = logging.getLogger(__name__)


class ElectricityMapsClient:
    """Grid-average intensity by coordinate; answers cached per rounded coordinate."""

    def __init__(
        self,
        token: str,
        api_url: str = DEFAULT_API_URL,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
        failure_pause_s: float = DEFAULT_FAILURE_PAUSE_S,
        clock: Callable[[], float] = time.monotonic,
        session: requests.Session | None = None,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._headers = {"auth-token": token}
        self._http = PoliteJson(
            "Electricity Maps", api_url, timeout_s=timeout_s, cache_ttl_s=cache_ttl_s,
            failure_pause_s=failure_pause_s, clock=clock, session=session, logger=log,
        )
        self._now = wall_clock

    @property
    def api_url(self) -> str:
        return self._http.base_url

    def latest(self, lat: float, lon: float) -> CarbonSignal | None:
        reply = self._get(LATEST_PATH, lat, lon)
        if not reply.ok:
            return None
        signal = self._signal(reply.payload, reply.payload, self._now())
        if signal is None:
            log.warning("Electricity Maps answer for lat=%s lon=%s has no usable carbonIntensity: %.60r",
                        lat, lon, reply.payload)
        return signal

    def latest_g_per_kwh(self, lat: float, lon: float) -> float | None:
        signal = self.latest(lat, lon)
        return None if signal is None else signal.g_per_kwh

    def history(self, lat: float, lon: float) -> CarbonSeries:
        """The past 24 h, hourly, oldest first."""
        return self._series(HISTORY_PATH, "history", lat, lon)

    def forecast(self, lat: float, lon: float) -> CarbonSeries:
        """The coming hours (24-72 h depending on the plan); a free token gets a note saying so."""
        return self._series(FORECAST_PATH, "forecast", lat, lon, plan_gated=True)

    def _get(self, path: str, lat: float, lon: float, plan_gated: bool = False) -> Reply:
        lat, lon = round(lat, COORDINATE_DECIMALS), round(lon, COORDINATE_DECIMALS)
        return self._http.get(path, {"lat": lat, "lon": lon}, headers=self._headers,
                              where=f"lat={lat} lon={lon}", plan_gated=plan_gated)

    def _series(self, path: str, field: str, lat: float, lon: float, plan_gated: bool = False) -> CarbonSeries:
        reply = self._get(path, lat, lon, plan_gated=plan_gated)
        if plan_gated and reply.status in (401, 402, 403):
            return CarbonSeries(note=(
                f"Electricity Maps refused the {field} ({reply.problem}): forecasts need a paid "
                "Electricity Maps plan; this token's plan does not include them"))
        if not reply.ok:
            return CarbonSeries(note=f"Electricity Maps {field} unavailable: {reply.problem}")
        payload = reply.payload
        rows = payload.get(field) if isinstance(payload, dict) else None
        if not isinstance(rows, list):
            return CarbonSeries(note=f"Electricity Maps {field} answer has no '{field}' list")
        now = self._now()
        points = [s for s in (self._signal(row, payload, now) for row in rows) if s is not None]
        points.sort(key=lambda s: s.at)
        skipped = len(rows) - len(points)
        return CarbonSeries(tuple(points), f"{skipped} unusable point(s) skipped" if skipped else "")

    @staticmethod
    def _signal(row: object, payload: object, now: datetime) -> CarbonSignal | None:
        if not isinstance(row, dict):
            return None
        value = usable_intensity(row.get("carbonIntensity"))
        if value is None:
            return None
        at = _time(row.get("datetime")) or now
        zone = row.get("zone") or (payload.get("zone") if isinstance(payload, dict) else None)
        return CarbonSignal(value, CarbonSource.ELECTRICITYMAPS, SignalKind.AVERAGE, at,
                            round((at - now).total_seconds() / 3600.0, 3),
                            str(zone)[:40] if isinstance(zone, str) else "")


def _time(raw: object) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        return utc(raw)
    except ValueError:
        return None
