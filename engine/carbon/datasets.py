"""The offline carbon-intensity tables shipped in assets/carbon (see its README for sources and licences).

`load_carbon_tables()` reads the CSVs once into an immutable `CarbonTables`; the resolver that owns
it keeps it for its lifetime, so nothing here is a module-level cache.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from engine.paths import ASSETS_DIR

CARBON_DIR = ASSETS_DIR / "carbon"
GCP_CARBON_FILE = "gcp_region_carbon_2024.csv"
GCP_COORDINATES_FILE = "gcp_region_coordinates.csv"
EMBER_FILE = "ember_country_intensity.csv"
ELECTRICITYMAPS_FILE = "electricitymaps_zones_2025.csv"

# The default for a peer nobody can place: Ember's yearly world average (the "World" row).
WORLD_ROW_NAME = "World"


@dataclass(frozen=True)
class GcpRegion:
    region: str                 # e.g. "europe-west1"
    location: str               # as Google names it, e.g. "Belgium"
    carbon_g_per_kwh: float     # 2024 yearly grid average (location-based)
    cfe_share: float            # Google carbon-free-energy share, 0..1
    lat: float
    lon: float
    city: str                   # where the coordinate points, e.g. "St. Ghislain, Belgium"


@dataclass(frozen=True)
class CountryIntensity:
    carbon_g_per_kwh: float
    table: str                  # "electricitymaps-2025" or "ember"
    key: str                    # the zone (alpha-2) or alpha-3 code that matched


@dataclass(frozen=True)
class CarbonTables:
    gcp_regions: Mapping[str, GcpRegion]
    ember_by_iso3: Mapping[str, float]
    zones_2025: Mapping[str, float]          # Electricity Maps zone code -> gCO2eq/kWh
    world_g_per_kwh: float                   # Ember "World" yearly average
    world_year: int

    def country(self, iso3: str | None, iso2: str | None) -> CountryIntensity | None:
        """Yearly intensity of a country's grid, or None when neither table has it.

        Electricity Maps 2025 wins over Ember: it is the newer year (Ember is mostly 2023/2024) and
        uses the same lifecycle methodology as the live Electricity Maps API, so offline and live
        values for the same peer stay comparable. Ember covers countries Electricity Maps only splits
        into sub-national zones (e.g. Russia, Chile).
        """
        if iso2 and iso2 in self.zones_2025:
            return CountryIntensity(self.zones_2025[iso2], "electricitymaps-2025", iso2)
        if iso3 and iso3 in self.ember_by_iso3:
            return CountryIntensity(self.ember_by_iso3[iso3], "ember", iso3)
        return None


def load_carbon_tables(carbon_dir: Path = CARBON_DIR) -> CarbonTables:
    """Read the four CSVs in `carbon_dir`. A missing or malformed file is a packaging bug: it raises."""
    coordinates = _read_region_coordinates(carbon_dir / GCP_COORDINATES_FILE)
    regions: dict[str, GcpRegion] = {}
    for row in _rows(carbon_dir / GCP_CARBON_FILE):
        name = row["Google Cloud Region"].strip()
        if name not in coordinates:
            raise ValueError(f"{GCP_COORDINATES_FILE} has no coordinate for GCP region {name!r}")
        lat, lon, city = coordinates[name]
        regions[name] = GcpRegion(
            region=name,
            location=row["Location"].strip(),
            carbon_g_per_kwh=float(row["Grid carbon intensity (gCO2eq / kWh)"]),
            cfe_share=float(row["Google CFE"]),
            lat=lat,
            lon=lon,
            city=city,
        )

    ember: dict[str, float] = {}
    world: tuple[float, int] | None = None
    for row in _rows(carbon_dir / EMBER_FILE):
        value = float(row["gco2_per_kwh"])
        code = row["iso3"].strip()
        if code:
            ember[code] = value
        elif row["country_or_region"].strip() == WORLD_ROW_NAME:
            world = (value, int(row["year"]))
    if world is None:
        raise ValueError(f"{EMBER_FILE} has no {WORLD_ROW_NAME!r} row for the default intensity")

    zones = {
        row["zone"].strip(): float(row["gco2_per_kwh"])
        for row in _rows(carbon_dir / ELECTRICITYMAPS_FILE)
        if row["gco2_per_kwh"].strip()
    }
    return CarbonTables(
        gcp_regions=MappingProxyType(regions),
        ember_by_iso3=MappingProxyType(ember),
        zones_2025=MappingProxyType(zones),
        world_g_per_kwh=world[0],
        world_year=world[1],
    )


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _read_region_coordinates(path: Path) -> dict[str, tuple[float, float, str]]:
    return {
        row["region"].strip(): (float(row["lat"]), float(row["lon"]), row["city"].strip())
        for row in _rows(path)
    }
