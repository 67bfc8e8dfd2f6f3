"""Coordinate -> country, offline, from Natural Earth 1:50m admin-0 polygons (public domain).

A point inside (or on the border of) a polygon gets that country. A point that misses every polygon
(a coastal data centre on reclaimed land, a rounding error, a pier) gets the nearest country within
`nearest_km` (50 km by default); further out at sea it gets None.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapefile  # pyshp, installed with cartopy
import shapely
from shapely.geometry import Point, shape
from shapely.ops import nearest_points
from shapely.strtree import STRtree

from engine.geo import EARTH_RADIUS_KM, haversine_km, haversine_many_km
from engine.paths import ASSETS_DIR

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
        self._geometry_array = np.asarray(geometries, dtype=object)
        shapely.prepare(self._geometry_array)
        # GEOS builds a prepared polygon's indexes lazily on its first queries: two threads querying at
        # once (a join resolving its carbon while a re-plan resolves the swarm) are the likely cause of a
        # rare "double free or corruption" abort of the coordinator. One query at a time.
        self._lock = threading.Lock()

    def locate(self, lat: float, lon: float) -> Country | None:
        with self._lock:
            return self._locate(lat, lon)

    def _locate(self, lat: float, lon: float) -> Country | None:
        point = Point(lon, lat)
        inside = self._tree.query(point, predicate="intersects")
        if len(inside):
            return self._countries[int(min(inside))]
        return self._nearest(lat, lon)

    def locate_many(self, lats, lons) -> list[Country | None]:
        """`locate` for many points in bulk: 10,000 peers in a fraction of a second.

        Points inside a country: one STRtree over the points queried with each (prepared) polygon, which
        is several times faster than querying the country tree point by point. The rest: `_nearest_many`.
        """
        with self._lock:
            return self._locate_many(lats, lons)

    def _locate_many(self, lats, lons) -> list[Country | None]:
        lats = np.asarray(lats, dtype=np.float64)
        lons = np.asarray(lons, dtype=np.float64)
        found: list[Country | None] = [None] * len(lats)
        if not len(lats):
            return found
        polygon, inside = STRtree(shapely.points(lons, lats)).query(self._geometry_array, predicate="intersects")
        # Like `locate`, a point on a shared border takes the lowest polygon index: sort by point, then index.
        order = np.lexsort((polygon, inside))
        first_points, first_at = np.unique(inside[order], return_index=True)
        for point, at in zip(first_points.tolist(), order[first_at].tolist(), strict=True):
            found[point] = self._countries[int(polygon[at])]
        missed = np.flatnonzero(~np.isin(np.arange(len(lats)), first_points))
        for index, country in zip(missed.tolist(), self._nearest_many(lats[missed], lons[missed]), strict=True):
            found[index] = country
        return found

    def _nearest_many(self, lats: np.ndarray, lons: np.ndarray) -> list[Country | None]:
        """`_nearest` for many points: a box query, a conservative planar `dwithin` filter on prepared
        polygons, then exact great-circle distances to the planar nearest points of what is left."""
        if not len(lats):
            return []
        dlat = math.degrees(self.nearest_km / EARTH_RADIUS_KM) * 1.1
        dlon = dlat / np.maximum(np.cos(np.radians(lats)), 0.01)
        best_km = np.full(len(lats), np.inf)
        best_polygon = np.full(len(lats), -1)
        for shift in (0.0, 360.0, -360.0):
            west, east = lons + shift - dlon, lons + shift + dlon
            use = np.ones(len(lats), dtype=bool) if not shift else ~((-180.0 <= west) & (east <= 180.0))
            if not use.any():
                continue
            rows = np.flatnonzero(use)
            box_index, polygon = self._tree.query(shapely.box(west[rows], lats[rows] - dlat,
                                                              east[rows], lats[rows] + dlat))
            point_index = rows[box_index]
            shifted = shapely.points(lons[point_index] + shift, lats[point_index])
            # A point within nearest_km on the sphere is within dlon degrees on the plane (dlon >= dlat).
            close = shapely.dwithin(self._geometry_array[polygon], shifted, dlon[point_index])
            point_index, polygon, shifted = point_index[close], polygon[close], shifted[close]
            if not len(point_index):
                continue
            # The planar nearest point is not the geodesic one, but within tens of km it is close.
            lines = shapely.shortest_line(self._geometry_array[polygon], shifted)
            start = shapely.get_coordinates(shapely.get_point(lines, 0))
            km = haversine_many_km(lats[point_index], lons[point_index], start[:, 1], start[:, 0])
            for p, poly, d in zip(point_index.tolist(), polygon.tolist(), km.tolist(), strict=True):
                if d <= self.nearest_km and d < best_km[p]:
                    best_km[p], best_polygon[p] = d, poly
        return [None if b < 0 else self._countries[int(b)] for b in best_polygon.tolist()]

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
