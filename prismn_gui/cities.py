"""Ingress choices: major cities with coordinates (WGS84 degrees), for the ingress picker."""

from __future__ import annotations

CUSTOM = "Custom (lat/lon)"

# (name, lat, lon): city-centre coordinates, rounded to 0.01 deg.
CITIES: tuple[tuple[str, float, float], ...] = (
    ("Frankfurt", 50.11, 8.68),
    ("London", 51.51, -0.13),
    ("Paris", 48.86, 2.35),
    ("Stockholm", 59.33, 18.07),
    ("New York", 40.71, -74.01),
    ("San Francisco", 37.77, -122.42),
    ("Toronto", 43.65, -79.38),
    ("São Paulo", -23.55, -46.63),
    ("Johannesburg", -26.20, 28.05),
    ("Mumbai", 19.08, 72.88),
    ("Singapore", 1.35, 103.82),
    ("Tokyo", 35.68, 139.69),
    ("Seoul", 37.57, 126.98),
    ("Sydney", -33.87, 151.21),
    ("Dubai", 25.20, 55.27),
)

CITY_NAMES: tuple[str, ...] = tuple(name for name, _, _ in CITIES)


def city_coords(name: str) -> tuple[float, float] | None:
    for city, lat, lon in CITIES:
        if city == name:
            return lat, lon
    return None
