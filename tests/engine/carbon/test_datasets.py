"""The offline tables shipped in assets/carbon."""

from __future__ import annotations

import pytest

from engine.carbon.country import CountryLocator
from engine.carbon.datasets import CarbonTables

CONTINENT_OF_PREFIX = {
    "africa": "Africa",
    "asia": "Asia",
    "me": "Asia",
    "australia": "Oceania",
    "europe": "Europe",
    "northamerica": "North America",
    "us": "North America",
    "southamerica": "South America",
}


def test_every_gcp_region_has_a_value_and_a_coordinate_on_its_continent(
    tables: CarbonTables, locator: CountryLocator
) -> None:
    assert len(tables.gcp_regions) == 44
    for name, region in tables.gcp_regions.items():
        assert 0 <= region.carbon_g_per_kwh < 1000, name
        country = locator.locate(region.lat, region.lon)
        assert country is not None, f"{name} at {region.city} is not on land"
        assert country.continent == CONTINENT_OF_PREFIX[name.split("-")[0]], (name, country)


def test_gcp_region_values_match_the_google_file(tables: CarbonTables) -> None:
    assert tables.gcp_regions["europe-west1"].carbon_g_per_kwh == pytest.approx(103.37)
    assert tables.gcp_regions["europe-north2"].carbon_g_per_kwh == pytest.approx(2.73)
    assert tables.gcp_regions["us-central1"].cfe_share == pytest.approx(0.87)


def test_electricity_maps_2025_wins_over_ember_for_a_country(tables: CarbonTables) -> None:
    france = tables.country("FRA", "FR")
    assert (france.carbon_g_per_kwh, france.table) == (31.0, "electricitymaps-2025")
    assert tables.ember_by_iso3["FRA"] == pytest.approx(44.18)  # the older Ember value loses


def test_ember_fills_in_where_electricity_maps_has_no_country_zone(tables: CarbonTables) -> None:
    assert "CL" not in tables.zones_2025  # Chile is only split into sub-national zones
    chile = tables.country("CHL", "CL")
    assert chile.table == "ember"
    assert chile.carbon_g_per_kwh == tables.ember_by_iso3["CHL"]


def test_a_country_in_neither_table_has_no_value(tables: CarbonTables) -> None:
    assert tables.country("MCO", "MC") is None


def test_the_default_is_embers_world_average(tables: CarbonTables) -> None:
    assert tables.world_g_per_kwh == pytest.approx(472.94)
    assert tables.world_year == 2024
