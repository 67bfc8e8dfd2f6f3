"""Live grid carbon intensity from the Electricity Maps API (v3), best effort.

`GET {api_url}/v3/carbon-intensity/latest?lat=..&lon=..` with header `auth-token: <token>` answers
`{"zone": "DE", "carbonIntensity": 302, ...}` in gCO2eq/kWh (lifecycle by default). Every failure
(timeout, connection error, HTTP error, bad JSON, missing or negative field) returns None and logs a
warning: a planning request must never fail because a carbon API is down. The token is never logged.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

import requests

DEFAULT_API_URL = "https://api.electricitymap.org"
LATEST_PATH = "/v3/carbon-intensity/latest"
DEFAULT_TIMEOUT_S = 3.0
# Electricity Maps publishes hourly values, so a 15 min cache loses little and spares the quota.
DEFAULT_CACHE_TTL_S = 900.0
# After a failure the API is skipped for this long, for every coordinate: with 40 peers and a dead
# endpoint, each peer would otherwise wait out its own timeout.
DEFAULT_FAILURE_PAUSE_S = 60.0
# Two decimals is ~1 km: far finer than any grid zone, coarse enough to share answers between
# peers in the same data centre.
COORDINATE_DECIMALS = 2

log = logging.getLogger(__name__)


class ElectricityMapsClient:
    """Latest carbon intensity by coordinate, with a TTL cache keyed by the rounded coordinate."""

    def __init__(
        self,
        token: str,
        api_url: str = DEFAULT_API_URL,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
        failure_pause_s: float = DEFAULT_FAILURE_PAUSE_S,
        clock: Callable[[], float] = time.monotonic,
        session: requests.Session | None = None,
    ) -> None:
        self._token = token
        self.api_url = api_url.rstrip("/")
        self.timeout_s = timeout_s
        self.cache_ttl_s = cache_ttl_s
        self.failure_pause_s = failure_pause_s
        self._clock = clock
        self._session = session or requests.Session()
        self._cache: dict[tuple[float, float], tuple[float, float | None]] = {}  # key -> (expires, value)
        self._paused_until = -math.inf
        self._lock = threading.Lock()

    def latest_g_per_kwh(self, lat: float, lon: float) -> float | None:
        key = (round(lat, COORDINATE_DECIMALS), round(lon, COORDINATE_DECIMALS))
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] > now:
                return cached[1]
            if now < self._paused_until:
                log.debug("Electricity Maps paused after a failure; skipping %s", key)
                return None
        value, pause = self._fetch(*key)
        now = self._clock()
        with self._lock:
            ttl_s = self.cache_ttl_s if value is not None else self.failure_pause_s
            self._cache[key] = (now + ttl_s, value)
            if pause:
                self._paused_until = now + self.failure_pause_s
        return value

    def _fetch(self, lat: float, lon: float) -> tuple[float | None, bool]:
        """(value, pause): value None on any failure; pause when the whole endpoint looks unusable."""
        url = self.api_url + LATEST_PATH
        where = f"lat={lat} lon={lon}"
        try:
            response = self._session.get(
                url,
                params={"lat": lat, "lon": lon},
                headers={"auth-token": self._token},
                timeout=self.timeout_s,
            )
        except requests.Timeout:
            log.warning("Electricity Maps timed out after %.1f s at %s (%s)", self.timeout_s, url, where)
            return None, True
        except (requests.RequestException, UnicodeError) as error:
            # UnicodeError: http.client encodes header values as latin-1, so a token holding any
            # other character fails before anything is sent, outside requests' own exceptions.
            log.warning("Electricity Maps unreachable at %s (%s): %s", url, where, type(error).__name__)
            return None, True
        if response.status_code != 200:
            # 401/403 (bad token), 429 (quota) and 5xx hit every coordinate alike; other 4xx (e.g. a
            # point outside every zone) concern this coordinate only.
            status = response.status_code
            log.warning("Electricity Maps answered HTTP %d for %s", status, where)
            return None, status in (401, 403, 429) or status >= 500
        try:
            payload = response.json()
        except ValueError:
            log.warning("Electricity Maps answered non-JSON for %s", where)
            return None, False
        raw = payload.get("carbonIntensity") if isinstance(payload, dict) else None
        value = _usable_intensity(raw)
        if value is None:
            log.warning("Electricity Maps answer for %s has no usable carbonIntensity: %.40r", where, raw)
        return value, False


def _usable_intensity(raw: object) -> float | None:
    """The value as a float when it is a finite number >= 0 (JSON true is not 1), else None."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    try:
        value = float(raw)
    except OverflowError:  # a JSON integer too large for a float
        return None
    return value if math.isfinite(value) and value >= 0 else None
