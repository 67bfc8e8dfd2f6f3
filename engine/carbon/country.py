"""Coordinate -> country, offline, from Natural Earth 1:50m admin-0 polygons (public domain).

A point inside (or on the border of) a polygon gets that country. A point that misses every polygon
(a coastal data centre on reclaimed land, a rounding error, a pier) gets the nearest country within
`nearest_km` (50 km by default); further out at sea it gets None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import shapefile  # pyshp, installed with cartopy
import shapely
from shapely.geometry import Point, shape
from shapely.ops import nearest_points
from shapely.strtree import STRtree

from engine.paths import ASSETS_DIR
from engine.planning.geo import EARTH_RADIUS_KM, haversine_km

COUNTRIES_SHP = (
    ASSETS_DIR / "natural_earth" / "shapefiles" / "natural_earth" / "cultural" / "ne_50m_admin_0_countries.shp"
)
NEAREST_KM = 50.0
_MISSING = "-99"             # Natural Earth's "no code" marker (France and Norway have ISO_A3 = -99)

# Natural Earth codes that differ from the ISO-style codes the carbon tables use.
_ISO3_ALIASES = {"KOS": "XKX"}  # Kosovo: Natural Earth ADM0_A3 "KOS", Ember "XKX"


@dataclass(frozen=True)
class Country:
    iso3: str            # ISO 3166 alpha-3 where Natural Earth has one, else its ADM0_A3
    iso2: str | None     # ISO 3166 alpha-2 (Electricity Maps zone code), None when unknown
    name: str
    continent: str       # Natural Earth CONTINENT, e.g. "Europe", "Oceania"


class CountryLocator:
    """Point-in-polygon lookup over Natural Earth countries with a shapely STRtree."""

    def __init__(self, shapefile_path: Path = COUNTRIES_SHP, nearest_km: float = NEAREST_KM) -> None:
        self.nearest_km = nearest_km
        geometries: list[shapely.Geometry] = []
        countries: list[Country] = []
        with shapefile.Reader(str(shapefile_path), encoding="utf-8") as reader:
            for record in reader.iterShapeRecords():
                geometries.append(shape(record.shape.__geo_interface__))
                countries.append(_country_of(record.record.as_dict()))
        self._geometries = geometries
        self._countries = countries
        self._tree = STRtree(geometries)

    def locate(self, lat: float, lon: float) -> Country | None:
        point = Point(lon, lat)
        inside = self._tree.query(point, predicate="intersects")
        if len(inside):
            return self._countries[int(min(inside))]
        return self._nearest(lat, lon)

    def _nearest(self, lat: float, lon: float) -> Country | None:
        # Search a box a little larger than nearest_km, then measure candidates on the sphere:
        # degrees of longitude shrink with latitude, so planar distances in degrees would mislead.
        dlat = math.degrees(self.nearest_km / EARTH_RADIUS_KM) * 1.1
        dlon = dlat / max(math.cos(math.radians(lat)), 0.01)
        best: tuple[float, int] | None = None
        # Near the antimeridian the search box wraps: look again with the point shifted by 360°.
        for shift in (0.0, 360.0, -360.0):
            west, east = lon + shift - dlon, lon + shift + dlon
            if shift and -180.0 <= west and east <= 180.0:
                continue
            shifted = Point(lon + shift, lat)
            for index in self._tree.query(shapely.box(west, lat - dlat, east, lat + dlat)):
                # The planar nearest point is not the geodesic one, but within tens of km it is close.
                nearest = nearest_points(self._geometries[int(index)], shifted)[0]
                distance_km = haversine_km(lat, lon, nearest.y, nearest.x)
                if distance_km <= self.nearest_km and (best is None or distance_km < best[0]):
                    best = (distance_km, int(index))
        return None if best is None else self._countries[best[1]]


def _country_of(fields: dict[str, object]) -> Country:
    iso3 = str(fields["ISO_A3"])
    if iso3 == _MISSING:
        iso3 = str(fields["ADM0_A3"])
    iso3 = _ISO3_ALIASES.get(iso3, iso3)
    iso2 = next(
        (str(fields[key]) for key in ("ISO_A2_EH", "ISO_A2") if str(fields[key]) != _MISSING),
        None,
    )
    return Country(iso3=iso3, iso2=iso2, name=str(fields["NAME"]), continent=str(fields["CONTINENT"]))
