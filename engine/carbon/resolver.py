"""Decide one carbon intensity (gCO2eq/kWh) per peer, and say where it came from.

Order, first that answers wins:
  1. explicit    the peer states its own value (its own meter, a green tariff);
  2. live        Electricity Maps "latest" for the coordinate, only when a token is set;
  3. region      the peer names a Google Cloud region: Google's 2024 yearly grid average there;
  4. country     the country under the coordinate: Electricity Maps 2025, else Ember;
  5. default     Ember's yearly world average (a peer at sea, or a country without data).

This is a shell (files, HTTP, env): the planning core never imports it; it receives resolved Peers.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable

from engine.carbon.country import CountryLocator
from engine.carbon.datasets import CarbonTables, load_carbon_tables
from engine.carbon.electricitymaps import (
    DEFAULT_API_URL,
    DEFAULT_CACHE_TTL_S,
    DEFAULT_FAILURE_PAUSE_S,
    DEFAULT_TIMEOUT_S,
    ElectricityMapsClient,
)
from engine.errors import InvalidInput
from engine.planning.types import CarbonSource

TOKEN_ENV = "ELECTRICITYMAPS_TOKEN"


class CarbonResolver:
    """Resolves peers' carbon intensity; offline tables are read once per resolver, on first need."""

    def __init__(
        self,
        token: str | None = None,
        api_url: str = DEFAULT_API_URL,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        use_env: bool = True,
        *,
        cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
        failure_pause_s: float = DEFAULT_FAILURE_PAUSE_S,
        clock: Callable[[], float] = time.monotonic,
        tables: CarbonTables | None = None,
        locator: CountryLocator | None = None,
    ) -> None:
        if token is None and use_env:
            token = os.environ.get(TOKEN_ENV) or None
        if not isinstance(api_url, str) or not api_url.startswith(("http://", "https://")):
            raise InvalidInput("api_url", api_url, "expected an http:// or https:// URL")
        if _bad_number(timeout_s) or timeout_s <= 0:
            raise InvalidInput("timeout_s", timeout_s, "expected a positive number of seconds")
        self._live = (
            ElectricityMapsClient(
                token,
                api_url=api_url,
                timeout_s=float(timeout_s),
                cache_ttl_s=cache_ttl_s,
                failure_pause_s=failure_pause_s,
                clock=clock,
            )
            if token
            else None
        )
        self._tables = tables
        self._locator = locator
        self._load_lock = threading.Lock()

    @property
    def live(self) -> bool:
        """Whether the Electricity Maps API is consulted (a token is set)."""
        return self._live is not None

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
    ) -> tuple[float, CarbonSource]:
        """(gCO2eq/kWh, source) for a peer at (lat, lon); bad inputs raise InvalidInput."""
        _check_coordinate("lat", lat, 90.0)
        _check_coordinate("lon", lon, 180.0)
        # Check the region first, so a typo fails the same with or without a token or explicit value.
        region_value = self._region_value(region) if region is not None else None
        if explicit is not None:
            if _bad_number(explicit) or explicit < 0:
                raise InvalidInput("carbon_g_per_kwh", explicit, "expected a finite number >= 0 (gCO2eq/kWh)")
            return float(explicit), CarbonSource.EXPLICIT

        if self._live is not None:
            value = self._live.latest_g_per_kwh(lat, lon)
            if value is not None:
                return value, CarbonSource.ELECTRICITYMAPS
        if region_value is not None:
            return region_value, CarbonSource.REGION
        country = self.locator.locate(lat, lon)
        if country is not None:
            intensity = self.tables.country(country.iso3, country.iso2)
            if intensity is not None:
                return intensity.carbon_g_per_kwh, CarbonSource.COUNTRY
        return self.tables.world_g_per_kwh, CarbonSource.DEFAULT

    def _region_value(self, region: object) -> float:
        if not isinstance(region, str):
            raise InvalidInput("region", region, "expected a Google Cloud region name such as 'europe-west1'")
        found = self.tables.gcp_regions.get(region.strip().lower())
        if found is None:
            raise InvalidInput(
                "region", region, "unknown Google Cloud region; known: " + ", ".join(self.region_names())
            )
        return found.carbon_g_per_kwh


def _bad_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True
    try:
        return not math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return True


def _check_coordinate(field: str, value: object, limit: float) -> None:
    if _bad_number(value) or not -limit <= value <= limit:  # type: ignore[operator]
        raise InvalidInput(field, value, f"expected a finite number in [-{limit:g}, {limit:g}] degrees")
