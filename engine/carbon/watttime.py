"""WattTime API v3: marginal operating emissions rate (MOER), best effort. A small client of the documented
HTTP API (the official `watttime` package would pull pandas and holidays into every Prismn install).

  GET /login  (HTTP basic auth)                         {"token": "..."}   valid 30 min
  GET /v3/region-from-loc?latitude&longitude&signal_type=co2_moer
                                                        {"region": "CAISO_NORTH", "region_full_name": .., ..}
  GET /v3/forecast?region&signal_type=co2_moer&horizon_hours=H
        {"data": [{"point_time": "2026-..+00:00", "value": 870.2}, ..],
         "meta": {"region": .., "signal_type": "co2_moer", "units": "lbs_co2_per_mwh", "generated_at": ..}}
  GET /v3/signal-index?region&signal_type=co2_moer      {"data": [{"point_time": .., "value": 73}],
                                                          "meta": {"units": "percentile", ..}}
Data calls carry `Authorization: Bearer <token>`. The current MOER is the forecast's first point
(horizon 0). Values come in lbs CO2/MWh and are converted to g/kWh. The signal index is a
percentile (0 = cleanest of the recent past), shown beside the MOER, never used as an intensity.
A 401 on a data call means the token expired: one fresh login, then one retry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import requests

from engine.carbon.http import DEFAULT_FAILURE_PAUSE_S, DEFAULT_TIMEOUT_S, PoliteJson, Reply, usable_intensity
from engine.carbon_values import CarbonSeries, CarbonSignal, CarbonSource, SignalKind, utc

DEFAULT_API_URL = "https://api.watttime.org"
API_URL_ENV = "WATTTIME_API_URL"
USERNAME_ENV = "WATTTIME_USERNAME"
PASSWORD_ENV = "WATTTIME_PASSWORD"
SIGNAL_TYPE = "co2_moer"
G_PER_KWH_PER_LB_PER_MWH = 0.45359237   # 453.59237 g per lb / 1000 kWh per MWh
TOKEN_LIFETIME_S = 25 * 60.0            # WattTime tokens last 30 min; renew a little early
DEFAULT_CACHE_TTL_S = 300.0             # MOER is published every 5 minutes
COORDINATE_DECIMALS = 2

log = logging.getLogger(__name__)


class WattTimeClient:
    def __init__(
        self,
        username: str,
        password: str,
        api_url: str = DEFAULT_API_URL,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
        failure_pause_s: float = DEFAULT_FAILURE_PAUSE_S,
        clock: Callable[[], float] = time.monotonic,
        session: requests.Session | None = None,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._auth = (username, password)
        self._http = PoliteJson(
            "WattTime", api_url, timeout_s=timeout_s, cache_ttl_s=cache_ttl_s,
            failure_pause_s=failure_pause_s, clock=clock, session=session, logger=log,
        )
        self._clock = clock
        self._now = wall_clock
        self._token: tuple[str, float] | None = None   # (token, expires at clock())
        self._lock = threading.Lock()

    def latest(self, lat: float, lon: float) -> CarbonSignal | None:
        series = self._forecast(lat, lon, horizon_hours=0)
        return series.points[0] if series.points else None

    def forecast(self, lat: float, lon: float, horizon_hours: int = 24) -> CarbonSeries:
        return self._forecast(lat, lon, horizon_hours)

    def history(self, lat: float, lon: float) -> CarbonSeries:
        return CarbonSeries(note="WattTime history (/v3/historical) is not fetched: it needs a paid plan")

    def signal_index(self, lat: float, lon: float) -> float | None:
        """The current MOER percentile (0..100) of the peer's region, or None."""
        region = self._region(lat, lon)
        if region is None:
            return None
        reply = self._data("/v3/signal-index", {"region": region, "signal_type": SIGNAL_TYPE})
        rows = reply.payload.get("data") if reply.ok and isinstance(reply.payload, dict) else None
        if isinstance(rows, list) and rows and isinstance(rows[0], dict):
            value = usable_intensity(rows[0].get("value"))
            return value if value is not None and value <= 100 else None
        return None

    def _forecast(self, lat: float, lon: float, horizon_hours: int) -> CarbonSeries:
        region = self._region(lat, lon)
        if region is None:
            return CarbonSeries(note="WattTime: no region for this location (or the API is unavailable)")
        reply = self._data("/v3/forecast", {"region": region, "signal_type": SIGNAL_TYPE,
                                            "horizon_hours": horizon_hours})
        if reply.status == 403:
            return CarbonSeries(note=f"WattTime refused the forecast for {region} ({reply.problem}): "
                                     "this account's plan does not include that region")
        if not reply.ok or not isinstance(reply.payload, dict):
            return CarbonSeries(note=f"WattTime forecast unavailable: {reply.problem or 'bad answer'}")
        meta = reply.payload.get("meta") if isinstance(reply.payload.get("meta"), dict) else {}
        units = meta.get("units", "lbs_co2_per_mwh")
        factor = {"lbs_co2_per_mwh": G_PER_KWH_PER_LB_PER_MWH, "g_co2_per_kwh": 1.0}.get(units)
        if factor is None:
            return CarbonSeries(note=f"WattTime forecast in unknown units {units!r}")
        rows = reply.payload.get("data")
        now = self._now()
        points = []
        for row in rows if isinstance(rows, list) else []:
            if not isinstance(row, dict) or not isinstance(row.get("point_time"), str):
                continue
            value = usable_intensity(row.get("value"))
            try:
                at = utc(row["point_time"])
            except ValueError:
                continue
            if value is not None:
                points.append(CarbonSignal(round(value * factor, 3), CarbonSource.WATTTIME, SignalKind.MARGINAL,
                                           at, round((at - now).total_seconds() / 3600.0, 3), region))
        points.sort(key=lambda s: s.at)
        return CarbonSeries(tuple(points), "" if points else "WattTime forecast had no usable points")

    def _region(self, lat: float, lon: float) -> str | None:
        lat, lon = round(lat, COORDINATE_DECIMALS), round(lon, COORDINATE_DECIMALS)
        reply = self._data("/v3/region-from-loc", {"latitude": lat, "longitude": lon, "signal_type": SIGNAL_TYPE})
        region = reply.payload.get("region") if reply.ok and isinstance(reply.payload, dict) else None
        return region[:64] if isinstance(region, str) and region else None

    def _data(self, path: str, params: dict) -> Reply:
        for attempt in range(2):
            token = self._login(force=attempt > 0)
            if token is None:
                return Reply(None, None, "WattTime login failed")
            reply = self._http.get(path, params, headers={"Authorization": f"Bearer {token}"},
                                   plan_gated=True, where=path)
            if reply.status != 401:
                return reply
        return reply

    def _login(self, force: bool = False) -> str | None:
        with self._lock:
            if not force and self._token is not None and self._token[1] > self._clock():
                return self._token[0]
        reply = self._http.get("/login", auth=self._auth, cache=False, where="login")
        token = reply.payload.get("token") if reply.ok and isinstance(reply.payload, dict) else None
        if not isinstance(token, str) or not token:
            return None
        with self._lock:
            self._token = (token, self._clock() + TOKEN_LIFETIME_S)
        return token
