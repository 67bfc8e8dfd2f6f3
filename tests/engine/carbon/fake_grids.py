"""One real HTTP server on 127.0.0.1 that plays Electricity Maps v3, the GB National Grid carbon-intensity
API and WattTime v3, each in its documented response format, over one shared model of grid zones.

A zone has a centre and an intensity that may change with time; a coordinate belongs to the nearest
zone centre. The server's clock (`now`) is set by the test or the replay, so history and forecasts
are consistent with what "latest" says. Tests can also force a status, a delay, or a run of 429s
with Retry-After on any API. Used by tests and by benchmarks/bench_carbon_day.py.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from engine.geo import haversine_km

LBS_PER_MWH_PER_G_PER_KWH = 1 / 0.45359237


@dataclass
class Zone:
    name: str
    lat: float
    lon: float
    g_per_kwh: Callable[[datetime], float]           # average intensity at a moment
    marginal_g_per_kwh: Callable[[datetime], float] | None = None


@dataclass
class FakeGrids:
    zones: dict[str, Zone] = field(default_factory=dict)
    now: datetime = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    token: str = "em-token"
    watttime_login: tuple[str, str] = ("wt-user", "wt-pass")
    forecast_allowed: bool = True                     # Electricity Maps: does the token's plan include it
    delay_s: float = 0.0
    forced: dict[str, tuple[int, bytes]] = field(default_factory=dict)   # api -> (status, body)
    rate_limited: dict[str, int] = field(default_factory=dict)           # api -> 429s still to send
    retry_after: str = "30"
    failing_prefix: str | None = None                 # paths under it answer 500 (e.g. "/regional")
    requests: list[tuple[str, str]] = field(default_factory=list)        # (api, path)
    url: str = ""
    _server: ThreadingHTTPServer | None = None

    def set_zone(self, name: str, lat: float, lon: float, g_per_kwh: float | Callable[[datetime], float],
                 marginal: float | Callable[[datetime], float] | None = None) -> None:
        self.zones[name] = Zone(name, lat, lon, _as_fn(g_per_kwh), None if marginal is None else _as_fn(marginal))

    def count(self, api: str) -> int:
        return sum(1 for seen_api, _ in self.requests if seen_api == api)

    def zone_at(self, lat: float, lon: float) -> Zone | None:
        if not self.zones:
            return None
        return min(self.zones.values(), key=lambda z: haversine_km(lat, lon, z.lat, z.lon))

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- Electricity Maps v3 -------------------------------------------------------------------------
    def electricitymaps(self, path: str, query: dict, headers: dict) -> tuple[int, object]:
        if headers.get("auth-token") != self.token:
            return 401, {"status": "error", "message": "Invalid authentication token"}
        zone = self._zone_from(query, "lat", "lon")
        if zone is None:
            return 404, {"status": "error", "message": "No zone found for these coordinates"}
        hour = self.now.replace(minute=0, second=0, microsecond=0)

        def row(at: datetime) -> dict:
            return {"zone": zone.name, "carbonIntensity": round(zone.g_per_kwh(at)), "datetime": _z(at),
                    "updatedAt": _z(self.now), "isEstimated": False, "emissionFactorType": "lifecycle"}

        if path.endswith("/latest"):
            return 200, row(hour)
        if path.endswith("/history"):
            return 200, {"zone": zone.name, "history": [row(hour - timedelta(hours=h)) for h in range(24, 0, -1)]}
        if path.endswith("/forecast"):
            if not self.forecast_allowed:
                return 403, {"status": "error", "message": "Your plan does not give access to forecasts"}
            return 200, {"zone": zone.name, "updatedAt": _z(self.now),
                         "forecast": [{"carbonIntensity": round(zone.g_per_kwh(hour + timedelta(hours=h))),
                                       "datetime": _z(hour + timedelta(hours=h))} for h in range(1, 25)]}
        return 404, {"status": "error", "message": "unknown path"}

    # --- GB National Grid ----------------------------------------------------------------------------
    def nationalgrid(self, path: str) -> tuple[int, object]:
        half_hour = self.now.replace(minute=self.now.minute - self.now.minute % 30, second=0, microsecond=0)
        from engine.carbon.nationalgrid import REGIONS

        def period(zone: Zone, start: datetime, actual: bool) -> dict:
            value = round(zone.g_per_kwh(start))
            intensity = {"forecast": value, "index": "moderate"}
            if actual:
                intensity["actual"] = value if start <= self.now else None
            return {"from": _m(start), "to": _m(start + timedelta(minutes=30)), "intensity": intensity}

        def periods(zone: Zone, span: str, actual: bool) -> list[dict]:
            steps = range(0, 96) if span == "fw48h" else range(-48, 1)
            return [period(zone, half_hour + timedelta(minutes=30 * s), actual) for s in steps]

        national = self.zones.get("GB") or self.zone_at(52.5, -1.5)
        if national is None:
            return 400, {"error": {"code": "400 Bad Request", "message": "no data"}}
        if path == "/intensity":
            return 200, {"data": [period(national, half_hour, True)]}
        if m := re.fullmatch(r"/intensity/[^/]+/(fw48h|pt24h)", path):
            return 200, {"data": periods(national, m[1], True)}
        if m := re.fullmatch(r"/regional/regionid/(\d+)", path):
            region = int(m[1])
            zone = self._gb_zone(region)
            return 200, {"data": [{"regionid": region, "dnoregion": "DNO", "shortname": REGIONS[region][0],
                                   "data": [period(zone, half_hour, False)]}]}
        if m := re.fullmatch(r"/regional/intensity/[^/]+/(fw48h|pt24h)/regionid/(\d+)", path):
            region = int(m[2])
            zone = self._gb_zone(region)
            return 200, {"data": {"regionid": region, "dnoregion": "DNO", "shortname": REGIONS[region][0],
                                  "data": periods(zone, m[1], False)}}
        return 400, {"error": {"code": "400 Bad Request", "message": "Please enter a valid path"}}

    def _gb_zone(self, region: int) -> Zone:
        from engine.carbon.nationalgrid import REGIONS

        _, lat, lon = REGIONS[region]
        return self.zones.get(f"GB-{region}") or self.zone_at(lat, lon)

    # --- WattTime v3 ---------------------------------------------------------------------------------
    def watttime(self, path: str, query: dict, headers: dict) -> tuple[int, object]:
        if path == "/login":
            expected = "Basic " + base64.b64encode(":".join(self.watttime_login).encode()).decode()
            if headers.get("authorization") != expected:
                return 401, {"error": "Unauthorized"}
            return 200, {"token": "wt-token-1"}
        if headers.get("authorization") != "Bearer wt-token-1":
            return 401, {"error": "Unauthorized"}
        if path == "/v3/region-from-loc":
            zone = self._zone_from(query, "latitude", "longitude")
            if zone is None:
                return 404, {"error": "Coordinates not found"}
            return 200, {"region": zone.name, "region_full_name": f"Fake {zone.name}",
                         "signal_type": query.get("signal_type", "co2_moer")}
        zone = self.zones.get(query.get("region", ""))
        if zone is None:
            return 400, {"error": "region not found"}
        marginal = zone.marginal_g_per_kwh or zone.g_per_kwh
        five = self.now.replace(minute=self.now.minute - self.now.minute % 5, second=0, microsecond=0)
        if path == "/v3/forecast":
            hours = int(query.get("horizon_hours", "24"))
            steps = max(1, hours * 12)
            data = [{"point_time": (five + timedelta(minutes=5 * s)).isoformat(),
                     "value": round(marginal(five + timedelta(minutes=5 * s)) * LBS_PER_MWH_PER_G_PER_KWH, 1)}
                    for s in range(steps)]
            return 200, {"data": data, "meta": {"region": zone.name, "signal_type": "co2_moer",
                                                "units": "lbs_co2_per_mwh", "generated_at": five.isoformat(),
                                                "data_point_period_seconds": 300}}
        if path == "/v3/signal-index":
            return 200, {"data": [{"point_time": five.isoformat(), "value": 42.0}],
                         "meta": {"region": zone.name, "signal_type": "co2_moer", "units": "percentile"}}
        return 404, {"error": "unknown path"}

    def _zone_from(self, query: dict, lat_key: str, lon_key: str) -> Zone | None:
        try:
            return self.zone_at(float(query[lat_key]), float(query[lon_key]))
        except (KeyError, ValueError):
            return None


def _as_fn(value: float | Callable[[datetime], float]) -> Callable[[datetime], float]:
    return value if callable(value) else (lambda _at: float(value))


def _z(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _m(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def _api_of(path: str) -> tuple[str, str]:
    """Each API lives under its own prefix on the one server: /em, /ng, /wt."""
    for prefix in ("em", "ng", "wt"):
        if path.startswith(f"/{prefix}/") or path == f"/{prefix}":
            return prefix, path[len(prefix) + 1:] or "/"
    return "", path


def start_fake_grids() -> FakeGrids:
    grids = FakeGrids()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            parts = urlsplit(self.path)
            api, path = _api_of(parts.path)
            grids.requests.append((api, path))
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            if grids.delay_s:
                time.sleep(grids.delay_s)
            extra: dict[str, str] = {}
            if grids.rate_limited.get(api, 0) > 0:
                grids.rate_limited[api] -= 1
                status, body = 429, json.dumps({"message": "Too many requests"}).encode()
                extra["Retry-After"] = grids.retry_after
            elif api in grids.forced:
                status, body = grids.forced[api]
            elif grids.failing_prefix and path.startswith(grids.failing_prefix):
                status, body = 500, b'{"error": {"code": "500", "message": "Internal Server Error"}}'
            else:
                handler = {"em": lambda: grids.electricitymaps(path, query, headers),
                           "ng": lambda: grids.nationalgrid(path),
                           "wt": lambda: grids.watttime(path, query, headers)}.get(api)
                status, payload = handler() if handler else (404, {"error": "no such API"})
                body = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    grids._server = server
    grids.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return grids
