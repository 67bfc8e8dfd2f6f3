"""Coordinate -> country from Natural Earth, offline."""

from __future__ import annotations

import pytest

from engine.carbon.country import CountryLocator


@pytest.mark.parametrize(
    ("city", "lat", "lon", "iso3", "iso2", "continent"),
    [
        # France and Norway have ISO_A3 = -99 in Natural Earth: they must still come out as FRA/NOR.
        ("Paris", 48.8566, 2.3522, "FRA", "FR", "Europe"),
        ("Oslo", 59.9139, 10.7522, "NOR", "NO", "Europe"),
        ("São Paulo", -23.5505, -46.6333, "BRA", "BR", "South America"),
        ("Frankfurt", 50.1109, 8.6821, "DEU", "DE", "Europe"),
        ("Pristina", 42.6629, 21.1655, "XKX", "XK", "Europe"),
        ("Singapore", 1.3521, 103.8198, "SGP", "SG", "Asia"),
        ("Auckland", -36.8485, 174.7633, "NZL", "NZ", "Oceania"),
        ("Nairobi", -1.2921, 36.8219, "KEN", "KE", "Africa"),
        ("Chicago", 41.8781, -87.6298, "USA", "US", "North America"),
    ],
)
def test_a_city_lies_in_its_country(locator: CountryLocator, city, lat, lon, iso3, iso2, continent) -> None:
    country = locator.locate(lat, lon)
    assert country is not None, city
    assert (country.iso3, country.iso2, country.continent) == (iso3, iso2, continent)


def test_a_point_just_off_the_coast_gets_the_nearest_country(locator: CountryLocator) -> None:
    # North of the Frisian islands, in the North Sea: no polygon, Netherlands ~10 km away.
    assert locator.locate(53.55, 5.0).iso3 == "NLD"
    # In the Gulf of Lion off Marseille.
    assert locator.locate(43.3, 5.2).iso3 == "FRA"


def test_a_point_far_at_sea_has_no_country(locator: CountryLocator) -> None:
    assert locator.locate(0.0, -30.0) is None          # mid-Atlantic
    assert locator.locate(54.0, 5.5) is None           # North Sea, ~70 km from land
    assert locator.locate(-48.0, -120.0) is None       # South Pacific


def test_the_nearest_distance_is_configurable() -> None:
    strict = CountryLocator(nearest_km=1.0)
    assert strict.locate(53.55, 5.0) is None


def test_the_bulk_lookup_agrees_with_one_point_at_a_time(locator) -> None:
    import numpy as np

    rng = np.random.default_rng(11)
    lats = np.concatenate([rng.uniform(-60, 72, 400), [51.5, 0.0, 64.8, -16.5, 53.35]])
    lons = np.concatenate([rng.uniform(-180, 180, 400), [-0.12, -30.0, -179.99, 179.9, -6.0]])
    assert locator.locate_many(lats, lons) == [locator.locate(a, b) for a, b in zip(lats, lons, strict=True)]
    assert locator.locate_many([], []) == []
