"""Each peer's country, for placement by country: from the peers file, else under its coordinates."""

import pytest

from engine.errors import InvalidInput
from engine.swarm import parse_swarm, with_countries

INGRESS = {"name": "Paris", "lat": 48.86, "lon": 2.35}


def test_countries_come_from_the_file_or_the_map():
    swarm = parse_swarm({"ingress": INGRESS, "peers": [
        {"id": "paris", "lat": 48.86, "lon": 2.35, "free_vram_gb": 40, "carbon_g_per_kwh": 30},
        {"id": "tokyo", "lat": 35.68, "lon": 139.69, "free_vram_gb": 40, "carbon_g_per_kwh": 450},
        {"id": "declared", "lat": 50.11, "lon": 8.68, "free_vram_gb": 40, "carbon_g_per_kwh": 300,
         "country": "de"},
        {"id": "at-sea", "lat": -40.0, "lon": -30.0, "free_vram_gb": 40, "carbon_g_per_kwh": 300},
    ]})
    assert [p.country for p in swarm.peers] == [None, None, "DE", None]
    located = with_countries(swarm)
    assert [p.country for p in located.peers] == ["FR", "JP", "DE", None]
    assert with_countries(located) is located or located.peers == with_countries(located).peers


def test_a_bad_country_in_the_file_names_its_path():
    with pytest.raises(InvalidInput) as error:
        parse_swarm({"ingress": INGRESS, "peers": [
            {"id": "x", "lat": 1, "lon": 1, "free_vram_gb": 1, "carbon_g_per_kwh": 1, "country": "FRA"}]})
    assert error.value.field == "peers[0].country"
