"""Decide one carbon intensity (gCO2eq/kWh) per peer, and say where it came from and what it measures.

Average (grid-mix) signal, first that answers wins:
  1. explicit    the peer states its own value (its own meter, a green tariff);
  2. live        Electricity Maps "latest" for the coordinate, only when a token is set;
  3. live GB     the National Grid carbon-intensity API, for peers in Great Britain (free, no key);
  4. region      the peer names a Google Cloud region: Google's 2024 yearly grid average there;
  5. country     the country under the coordinate: Electricity Maps 2025, else Ember;
  6. default     Ember's yearly world average (a peer at sea, or a country without data).
Marginal signal: explicit, then WattTime MOER when WATTTIME_USERNAME / WATTTIME_PASSWORD are set;
where no marginal source answers, the average chain answers and its value says kind "average".
Steps 4-6 are the shipped yearly averages: the offline fallback, labelled offline on every value.

This is a shell (files, HTTP, env): the planning core never imports it; it receives resolved Peers.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime

import numpy as np

from engine.carbon import electricitymaps, nationalgrid, watttime
from engine.carbon.country import Country, CountryLocator
from engine.carbon.datasets import CarbonTables, load_carbon_tables
from engine.carbon.electricitymaps import DEFAULT_CACHE_TTL_S, ElectricityMapsClient
from engine.carbon.http import DEFAULT_FAILURE_PAUSE_S, DEFAULT_TIMEOUT_S
from engine.carbon.nationalgrid import NationalGridClient
from engine.carbon.watttime import WattTimeClient
from engine.carbon_values import CarbonSeries, CarbonSignal, CarbonSource, SignalKind
from engine.errors import InvalidInput

TOKEN_ENV = "ELECTRICITYMAPS_TOKEN"
# The National Grid API needs no key, so it is asked by default for GB peers; set this to 0 to keep it
# off (tests, air-gapped hosts). Sources that need credentials are asked only when those are set.
NATIONALGRID_ENV = "PRISMN_NATIONALGRID"


class CarbonResolver:
    """Resolves peers' carbon signals; offline tables are read once per resolver, on first need."""

    def __init__(
        self,
        token: str | None = None,
        api_url: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        use_env: bool = True,
        *,
        cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
        failure_pause_s: float = DEFAULT_FAILURE_PAUSE_S,
        clock: Callable[[], float] = time.monotonic,
        tables: CarbonTables | None = None,
        locator: CountryLocator | None = None,
        nationalgrid_url: str | None = None,
        watttime_login: tuple[str, str] | None = None,
        watttime_url: str | None = None,
        wall_clock: Callable[[], datetime] | None = None,
    ) -> None:
        env = os.environ if use_env else {}
        if token is None:
            token = env.get(TOKEN_ENV) or None
        api_url = api_url or env.get(electricitymaps.API_URL_ENV) or electricitymaps.DEFAULT_API_URL
        if nationalgrid_url is None and use_env and env.get(NATIONALGRID_ENV, "1").strip() != "0":
            nationalgrid_url = env.get(nationalgrid.API_URL_ENV) or nationalgrid.DEFAULT_API_URL
        if watttime_login is None and env.get(watttime.USERNAME_ENV):
            watttime_login = (env[watttime.USERNAME_ENV], env.get(watttime.PASSWORD_ENV, ""))
        watttime_url = watttime_url or env.get(watttime.API_URL_ENV) or watttime.DEFAULT_API_URL
        for field, url in (("api_url", api_url), ("nationalgrid_url", nationalgrid_url),
                           ("watttime_url", watttime_url)):
            if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
                raise InvalidInput(field, url, "expected an http:// or https:// URL")
        if _bad_number(timeout_s) or timeout_s <= 0:
            raise InvalidInput("timeout_s", timeout_s, "expected a positive number of seconds")
        common = dict(timeout_s=float(timeout_s), failure_pause_s=failure_pause_s, clock=clock)
        if wall_clock is not None:   # replays and tests move "now" by hand
            common["wall_clock"] = wall_clock
        self._live = (ElectricityMapsClient(token, api_url=api_url, cache_ttl_s=cache_ttl_s, **common)
                      if token else None)
        self._nationalgrid = NationalGridClient(nationalgrid_url, **common) if nationalgrid_url else None
        self._watttime = (WattTimeClient(*watttime_login, api_url=watttime_url, **common)
                          if watttime_login else None)
        self._tables = tables
        self._locator = locator
        self._load_lock = threading.Lock()

    @property
    def live(self) -> bool:
        """Whether the Electricity Maps API is consulted (a token is set)."""
        return self._live is not None

    def live_sources(self, kind: SignalKind = SignalKind.AVERAGE) -> list[CarbonSource]:
        """The live sources consulted for `kind`, in order."""
        if signal_kind(kind) is SignalKind.MARGINAL:
            return [CarbonSource.WATTTIME] if self._watttime else []
        return ([CarbonSource.ELECTRICITYMAPS] if self._live else []) + (
            [CarbonSource.NATIONALGRID] if self._nationalgrid else [])

    @property
    def tables(self) -> CarbonTables:
        with self._load_lock:
            if self._tables is None:
                self._tables = load_carbon_tables()
            return self._tables

    @property
    def locator(self) -> CountryLocator:
        with self._load_lock:
            if self._locator is None:
                self._locator = CountryLocator()
            return self._locator

    def region_names(self) -> list[str]:
        return sorted(self.tables.gcp_regions)

    @property
    def default_g_per_kwh(self) -> float:
        return self.tables.world_g_per_kwh

    def resolve(
        self,
        lat: float,
        lon: float,
        explicit: float | None = None,
        region: str | None = None,
        kind: SignalKind = SignalKind.AVERAGE,
    ) -> tuple[float, CarbonSource]:
        """(gCO2eq/kWh, source) for a peer at (lat, lon); bad inputs raise InvalidInput."""
        signal = self.signal(lat, lon, explicit, region, kind)
        return signal.g_per_kwh, signal.source

    def signal(
        self,
        lat: float,
        lon: float,
        explicit: float | None = None,
        region: str | None = None,
        kind: SignalKind = SignalKind.AVERAGE,
    ) -> CarbonSignal:
        return self.signals([lat], [lon], [explicit], [region], kind)[0]

    def signals(
        self,
        lats: Sequence[float],
        lons: Sequence[float],
        explicit: Sequence[float | None] | None = None,
        regions: Sequence[str | None] | None = None,
        kind: SignalKind = SignalKind.AVERAGE,
        paths: Sequence[str] | None = None,
    ) -> list[CarbonSignal]:
        """One signal per peer. Countries come from ONE bulk spatial query over all peers left to the
        offline tables. Bad inputs raise InvalidInput naming the field, prefixed by `paths[i]` when given
        (e.g. "peers[3].region")."""
        return self._signals(lats, lons, explicit, regions, signal_kind(kind), paths)

    def _signals(self, lats, lons, explicit, regions, kind: SignalKind, paths) -> list[CarbonSignal]:
        count = len(lats)
        where = (lambda i, field: f"{paths[i]}.{field}") if paths is not None else (lambda i, field: field)
        explicit = list(explicit) if explicit is not None else [None] * count
        regions = list(regions) if regions is not None else [None] * count
        if len(lats) != len(lons):
            raise InvalidInput("lons", len(lons), f"expected one per latitude ({len(lats)})")
        if not _all_coordinates_fine(lats, lons):     # find and name the first bad one
            for i, (lat, lon) in enumerate(zip(lats, lons, strict=True)):
                _check_coordinate(where(i, "lat"), lat, 90.0)
                _check_coordinate(where(i, "lon"), lon, 180.0)
        # Check regions first, so a typo fails the same with or without a token or explicit value.
        region_values = [self._region_value(r, where(i, "region")) if r is not None else None
                         for i, r in enumerate(regions)]
        out: list[CarbonSignal | None] = [None] * count
        for i, value in enumerate(explicit):
            if value is not None:
                if _bad_number(value) or value < 0:
                    raise InvalidInput(where(i, "carbon_g_per_kwh"), value, "expected a finite number >= 0 (gCO2eq/kWh)")
                out[i] = CarbonSignal(float(value), CarbonSource.EXPLICIT, kind, detail="stated by the peer")
        if self._clients(kind):
            for i in range(count):
                if out[i] is None:
                    out[i] = self._live_signal(float(lats[i]), float(lons[i]), kind)
        for i, value in enumerate(region_values):
            if out[i] is None and value is not None:
                out[i] = CarbonSignal(value, CarbonSource.REGION, SignalKind.AVERAGE,
                                      detail=f"{regions[i].strip().lower()} yearly average 2024 (offline)")
        todo = [i for i in range(count) if out[i] is None]
        if todo:
            countries = self.locator.locate_many(np.asarray(lats, dtype=np.float64)[todo],
                                                 np.asarray(lons, dtype=np.float64)[todo])
            known: dict[Country | None, CarbonSignal] = {}   # many peers share a country
            for i, country in zip(todo, countries, strict=True):
                if country not in known:
                    known[country] = self._offline_signal(country)
                out[i] = known[country]
        return out  # type: ignore[return-value]

    def signal_index(self, lat: float, lon: float) -> float | None:
        """WattTime's MOER percentile (0 = cleanest of the recent past) for the place, when configured."""
        return self._watttime.signal_index(lat, lon) if self._watttime is not None else None

    def forecast(self, lat: float, lon: float, kind: SignalKind = SignalKind.AVERAGE) -> CarbonSeries:
        """The first live forecast for the place, else an empty series whose note says why."""
        return self._series(lat, lon, kind, "forecast")

    def history(self, lat: float, lon: float, kind: SignalKind = SignalKind.AVERAGE) -> CarbonSeries:
        """The past 24 h from the first live source that has them, else an empty series with a note."""
        return self._series(lat, lon, kind, "history")

    def _series(self, lat: float, lon: float, kind: SignalKind, which: str) -> CarbonSeries:
        kind = signal_kind(kind)
        _check_coordinate("lat", lat, 90.0)
        _check_coordinate("lon", lon, 180.0)
        notes = []
        for client in self._clients(kind):
            if isinstance(client, NationalGridClient) and not client.covers(lat, lon):
                continue
            series = getattr(client, which)(lat, lon)
            if series.points:
                return series
            notes.append(series.note)
        if not notes:
            notes.append(f"no live {kind.value} source is configured for this location "
                         f"({_setup_hint(kind)}); only the shipped yearly average is known")
        return CarbonSeries(note="; ".join(notes))

    def _clients(self, kind: SignalKind) -> list:
        if kind is SignalKind.MARGINAL:
            return [self._watttime] if self._watttime else []
        return [c for c in (self._live, self._nationalgrid) if c is not None]

    def _live_signal(self, lat: float, lon: float, kind: SignalKind) -> CarbonSignal | None:
        for client in self._clients(kind):
            signal = client.latest(lat, lon)
            if signal is not None:
                return signal
        return None

    def _offline_signal(self, country: Country | None) -> CarbonSignal:
        if country is not None:
            intensity = self.tables.country(country.iso3, country.iso2)
            if intensity is not None:
                return CarbonSignal(intensity.carbon_g_per_kwh, CarbonSource.COUNTRY, SignalKind.AVERAGE,
                                    detail=f"{intensity.key} yearly average ({intensity.table}, offline)")
        return CarbonSignal(self.tables.world_g_per_kwh, CarbonSource.DEFAULT, SignalKind.AVERAGE,
                            detail=f"world yearly average {self.tables.world_year} (Ember, offline)")

    def _region_value(self, region: object, field: str = "region") -> float:
        if not isinstance(region, str):
            raise InvalidInput(field, region, "expected a Google Cloud region name such as 'europe-west1'")
        found = self.tables.gcp_regions.get(region.strip().lower())
        if found is None:
            raise InvalidInput(
                field, region, "unknown Google Cloud region; known: " + ", ".join(self.region_names())
            )
        return found.carbon_g_per_kwh


def signal_kind(value: object) -> SignalKind:
    """'average' / 'marginal' (or a SignalKind) -> SignalKind; anything else names the field `signal`."""
    try:
        return SignalKind(value)
    except ValueError:
        raise InvalidInput("signal", value, "expected 'average' or 'marginal'") from None


def _setup_hint(kind: SignalKind) -> str:
    if kind is SignalKind.MARGINAL:
        return f"set {watttime.USERNAME_ENV} and {watttime.PASSWORD_ENV} for WattTime"
    return f"set {TOKEN_ENV} for Electricity Maps; GB peers use the National Grid API"


def _bad_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True
    try:
        return not math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return True


def _all_coordinates_fine(lats: Sequence[object], lons: Sequence[object]) -> bool:
    """One vectorised pass for the common case: every value a real number within range (no bools)."""
    try:
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in (*lats, *lons)):
            return False
        la = np.asarray(lats, dtype=np.float64)
        lo = np.asarray(lons, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return False
    return bool(np.all(np.abs(la) <= 90.0) and np.all(np.abs(lo) <= 180.0))   # NaN fails both


def _check_coordinate(field: str, value: object, limit: float) -> None:
    if _bad_number(value) or not -limit <= value <= limit:  # type: ignore[operator]
        raise InvalidInput(field, value, f"expected a finite number in [-{limit:g}, {limit:g}] degrees")
