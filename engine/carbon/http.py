"""Polite JSON GETs for the live carbon APIs: timeouts, a TTL cache, back-off and rate limits.

One `PoliteJson` per API (one back-off state per host). `get()` never raises: every failure
(timeout, refused connection, HTTP error, non-JSON) comes back as a `Reply` with `payload` None and
a short `problem`, logged once as a warning without any credential. After a failure that hits every
request alike (timeout, unreachable, 401/403, 5xx) the whole API rests for `failure_pause_s`,
doubling with each further failure up to `max_pause_s`; a 429 rests for its Retry-After (seconds or
an HTTP date) when the server gives one. A success ends the back-off.
"""

from __future__ import annotations

import email.utils
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import requests

DEFAULT_TIMEOUT_S = 3.0
DEFAULT_FAILURE_PAUSE_S = 60.0
DEFAULT_MAX_PAUSE_S = 900.0   # 15 min: never give up on an API for longer than one re-plan period
MAX_RETRY_AFTER_S = 3600.0    # a server asking for a day of silence is capped at an hour

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reply:
    status: int | None            # HTTP status, None when no answer came (timeout, refused, paused)
    payload: object | None        # decoded JSON on 200, else the decoded error body when it was JSON
    problem: str = ""             # empty on success

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.problem


class PoliteJson:
    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        cache_ttl_s: float = 900.0,
        failure_pause_s: float = DEFAULT_FAILURE_PAUSE_S,
        max_pause_s: float = DEFAULT_MAX_PAUSE_S,
        clock: Callable[[], float] = time.monotonic,
        session: requests.Session | None = None,
        logger: logging.Logger = log,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.cache_ttl_s = cache_ttl_s
        self.failure_pause_s = failure_pause_s
        self.max_pause_s = max_pause_s
        self._clock = clock
        self._session = session or requests.Session()
        self._log = logger
        self._cache: dict[tuple, tuple[float, Reply]] = {}   # key -> (expires, reply)
        self._paused_until = -math.inf
        self._failures = 0                                   # consecutive API-wide failures
        self._last_problem = ""
        self._lock = threading.Lock()

    def paused_for_s(self) -> float:
        """Seconds left in the current back-off (0 when the API may be asked)."""
        return max(0.0, self._paused_until - self._clock())

    def get(
        self,
        path: str,
        params: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        *,
        cache: bool = True,
        where: str = "",
        plan_gated: bool = False,
        http_errors_local: bool = False,
    ) -> Reply:
        """GET base_url + path. `plan_gated`: a 401/402/403 means this endpoint is not in the account's
        plan (a forecast on a free token), so it must not rest the whole API, only this request.
        `http_errors_local`: an HTTP error answer concerns this endpoint only (the caller has another
        endpoint to fall back on); timeouts and unreachable hosts still rest the whole API."""
        key = (path, tuple(sorted((params or {}).items())))
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
            if cache and cached is not None and cached[0] > now:
                return cached[1]
            if now < self._paused_until:
                return Reply(None, None, f"{self.name} resting for {self._paused_until - now:.0f} s "
                                         f"after: {self._last_problem}")
        reply, api_wide, retry_after_s = self._fetch(path, params, headers, auth, where)
        now = self._clock()
        with self._lock:
            if reply.ok:
                self._failures = 0
                if cache:
                    self._cache[key] = (now + self.cache_ttl_s, reply)
            elif api_wide and not (plan_gated and reply.status in (401, 402, 403)) and not (
                    http_errors_local and reply.status is not None):
                self._failures += 1
                self._last_problem = reply.problem
                pause = min(self.max_pause_s, self.failure_pause_s * 2 ** (self._failures - 1))
                if retry_after_s is not None:
                    pause = retry_after_s
                self._paused_until = now + pause
            elif cache and reply.status != 401:
                # (a 401 is never cached: the caller may log in again and retry at once.)
                # A failure that concerns this request only (a 404 for a point outside every zone):
                # remember it briefly so the next plan does not ask again at once.
                self._cache[key] = (now + self.failure_pause_s, reply)
        return reply

    def _fetch(self, path, params, headers, auth, where) -> tuple[Reply, bool, float | None]:
        """(reply, api_wide, retry_after_s): api_wide when the failure would hit any request."""
        url = self.base_url + path
        at = f" ({where})" if where else ""
        try:
            response = self._session.get(url, params=params, headers=headers, auth=auth, timeout=self.timeout_s)
        except requests.Timeout:
            self._log.warning("%s timed out after %.1f s at %s%s", self.name, self.timeout_s, url, at)
            return Reply(None, None, f"timed out after {self.timeout_s:g} s"), True, None
        except (requests.RequestException, UnicodeError) as error:
            # UnicodeError: http.client encodes header values as latin-1, so a credential holding any
            # other character fails before anything is sent, outside requests' own exceptions.
            self._log.warning("%s unreachable at %s%s: %s", self.name, url, at, type(error).__name__)
            return Reply(None, None, f"unreachable ({type(error).__name__})"), True, None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        status = response.status_code
        if status != 200:
            self._log.warning("%s answered HTTP %d%s", self.name, status, at)
            retry_after = _retry_after_s(response.headers.get("Retry-After")) if status == 429 else None
            api_wide = status in (401, 403, 429) or status >= 500
            return Reply(status, payload, f"HTTP {status}{_message(payload)}"), api_wide, retry_after
        if payload is None:
            self._log.warning("%s answered non-JSON%s", self.name, at)
            return Reply(status, None, "answer is not JSON"), False, None
        return Reply(status, payload), False, None


def _message(payload: object) -> str:
    """The API's own words from an error body ({"message": ..} / {"error": ..}), shortened."""
    if isinstance(payload, dict):
        for key in ("message", "error", "detail"):
            text = payload.get(key)
            if isinstance(text, dict):
                text = text.get("message")
            if isinstance(text, str) and text.strip():
                return ": " + " ".join(text.split())[:200]
    return ""


def _retry_after_s(header: str | None) -> float | None:
    """Retry-After as seconds (RFC 9110: delay-seconds or an HTTP date), capped; None when absent or bad."""
    if not header:
        return None
    header = header.strip()
    if header.isdigit():
        return min(float(header), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return min(max(0.0, when.timestamp() - time.time()), MAX_RETRY_AFTER_S)


def usable_intensity(raw: object) -> float | None:
    """The value as a float when it is a finite number >= 0 (JSON true is not 1), else None."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    try:
        value = float(raw)
    except OverflowError:  # a JSON integer too large for a float
        return None
    return value if math.isfinite(value) and value >= 0 else None
