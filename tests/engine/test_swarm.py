"""The peers file: strict validation naming field and value, carbon resolution, the demo swarm."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Callable
from typing import Any

import pytest

from engine.carbon import TOKEN_ENV, CarbonResolver
from engine.carbon.country import CountryLocator
from engine.carbon_values import CarbonSource
from engine.errors import InvalidInput
from engine.planning.gpus import GPU_TABLE
from engine.planning.types import Ingress, Peer
from engine.swarm import DEMO_SWARM_PATH, Swarm, load_swarm, parse_swarm
from tests.engine.carbon.local_api import start_local_api

GPU_TOTAL_GB = {  # what NVML reports as total memory, in GiB
    "H100 80GB": 79.6, "A100 80GB": 79.2, "A100 40GB": 39.4, "L40S": 44.5, "RTX 6000 Ada": 47.5,
    "RTX A6000": 47.5, "RTX 4090": 24.0, "RTX 3090": 24.0, "L4": 22.5, "A10G": 22.5, "T4": 15.0,
    "RTX 4080": 16.0, "V100 32GB": 31.7,
}
# llama-3.1-70b: 70.55e9 parameters (HF config) x 2 bytes in bf16, in GiB; weights alone.
LLAMA_70B_BF16_GB = 70.55e9 * 2 / 2**30


@pytest.fixture(scope="module")
def resolver() -> CarbonResolver:
    return CarbonResolver(use_env=False)


def valid_file() -> dict[str, Any]:
    return {
        "ingress": {"name": "Frankfurt", "lat": 50.1109, "lon": 8.6821},
        "peers": [
            {"id": "paris", "lat": 48.8566, "lon": 2.3522, "free_vram_gb": 70},
            {"id": "belgium", "lat": 50.4491, "lon": 3.8184, "free_vram_gb": 40.5, "region": "europe-west1",
             "gpu": "A100 40GB"},
            {"id": "home", "lat": 52.52, "lon": 13.405, "free_vram_gb": 22.0, "carbon_g_per_kwh": 15,
             "gpu": "RTX 4090", "tflops": 150, "power_w": 350, "rtt_ms": 12.5},
        ],
    }


def test_a_valid_file_gives_peers_with_resolved_carbon(resolver) -> None:
    swarm = parse_swarm(valid_file(), resolver=resolver)
    assert swarm.ingress == Ingress(lat=50.1109, lon=8.6821, name="Frankfurt")
    paris, belgium, home = swarm.peers
    assert paris == Peer("paris", 48.8566, 2.3522, 70.0, 31.0, CarbonSource.COUNTRY)
    assert (belgium.carbon_g_per_kwh, belgium.carbon_source, belgium.gpu) == (103.37, CarbonSource.REGION, "A100 40GB")
    assert (home.carbon_g_per_kwh, home.carbon_source) == (15.0, CarbonSource.EXPLICIT)
    assert (home.tflops, home.power_w, home.rtt_ms) == (150.0, 350.0, 12.5)
    assert isinstance(paris.free_vram_gb, float)
    assert swarm.total_free_vram_gb == pytest.approx(132.5)
    assert swarm.peer("home") is home


def test_null_optional_fields_count_as_absent(resolver) -> None:
    data = valid_file()
    data["peers"][0].update({"gpu": None, "region": None, "rtt_ms": None, "carbon_g_per_kwh": None})
    peer = parse_swarm(data, resolver=resolver).peers[0]
    assert (peer.gpu, peer.rtt_ms, peer.carbon_source) == (None, None, CarbonSource.COUNTRY)


def test_the_ingress_override_replaces_or_supplies_the_ingress(resolver) -> None:
    tokyo = Ingress(35.68, 139.65, "Tokyo")
    assert parse_swarm(valid_file(), resolver=resolver, ingress_override=tokyo).ingress == tokyo
    data = valid_file()
    del data["ingress"]
    assert parse_swarm(data, resolver=resolver, ingress_override=tokyo).ingress == tokyo


def test_an_ingress_without_a_name_is_called_ingress(resolver) -> None:
    data = valid_file()
    del data["ingress"]["name"]
    assert parse_swarm(data, resolver=resolver).ingress.name == "ingress"


def _set(path: tuple, value: Any) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


def _delete(path: tuple) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return edit


BAD_INPUTS = [
    # (case, edit, field, value)
    ("missing free_vram_gb", _delete(("peers", 2, "free_vram_gb")), "peers[2].free_vram_gb", None),
    ("missing id", _delete(("peers", 1, "id")), "peers[1].id", None),
    ("missing lat", _delete(("peers", 0, "lat")), "peers[0].lat", None),
    ("lat as string", _set(("peers", 0, "lat"), "48.8"), "peers[0].lat", "48.8"),
    ("vram as bool", _set(("peers", 1, "free_vram_gb"), True), "peers[1].free_vram_gb", True),
    ("lat as bool", _set(("peers", 1, "lat"), False), "peers[1].lat", False),
    ("vram NaN", _set(("peers", 0, "free_vram_gb"), math.nan), "peers[0].free_vram_gb", "nan"),
    ("vram inf", _set(("peers", 0, "free_vram_gb"), math.inf), "peers[0].free_vram_gb", math.inf),
    ("vram too large for a float", _set(("peers", 0, "free_vram_gb"), 10**400), "peers[0].free_vram_gb", 10**400),
    ("lon -inf", _set(("peers", 0, "lon"), -math.inf), "peers[0].lon", -math.inf),
    ("lat above 90", _set(("peers", 2, "lat"), 90.01), "peers[2].lat", 90.01),
    ("lat below -90", _set(("peers", 2, "lat"), -91), "peers[2].lat", -91),
    ("lon above 180", _set(("peers", 1, "lon"), 180.5), "peers[1].lon", 180.5),
    ("lon below -180", _set(("peers", 1, "lon"), -200), "peers[1].lon", -200),
    ("negative vram", _set(("peers", 0, "free_vram_gb"), -1), "peers[0].free_vram_gb", -1),
    ("negative tflops", _set(("peers", 2, "tflops"), -5), "peers[2].tflops", -5),
    ("zero tflops", _set(("peers", 2, "tflops"), 0), "peers[2].tflops", 0),
    ("negative power", _set(("peers", 2, "power_w"), -300), "peers[2].power_w", -300),
    ("negative rtt", _set(("peers", 2, "rtt_ms"), -0.5), "peers[2].rtt_ms", -0.5),
    ("negative carbon", _set(("peers", 2, "carbon_g_per_kwh"), -3), "peers[2].carbon_g_per_kwh", -3),
    ("carbon as string", _set(("peers", 2, "carbon_g_per_kwh"), "15"), "peers[2].carbon_g_per_kwh", "15"),
    ("empty id", _set(("peers", 1, "id"), ""), "peers[1].id", ""),
    ("blank id", _set(("peers", 1, "id"), "   "), "peers[1].id", "   "),
    ("numeric id", _set(("peers", 1, "id"), 7), "peers[1].id", 7),
    ("duplicate id", _set(("peers", 2, "id"), "paris"), "peers[2].id", "paris"),
    ("unknown region", _set(("peers", 1, "region"), "europe-west99"), "peers[1].region", "europe-west99"),
    ("empty gpu", _set(("peers", 1, "gpu"), ""), "peers[1].gpu", ""),
    ("gpu as number", _set(("peers", 1, "gpu"), 4090), "peers[1].gpu", 4090),
    ("typo in a field", _set(("peers", 0, "free_vram"), 12), "peers[0].free_vram", 12),
    ("peer not an object", _set(("peers", 1), [1, 2]), "peers[1]", [1, 2]),
    ("peers not a list", _set(("peers",), {"id": "x"}), "peers", {"id": "x"}),
    ("no peers", _set(("peers",), []), "peers", []),
    ("missing peers", _delete(("peers",)), "peers", None),
    ("missing ingress", _delete(("ingress",)), "ingress", None),
    ("ingress not an object", _set(("ingress",), "Frankfurt"), "ingress", "Frankfurt"),
    ("ingress lat out of range", _set(("ingress", "lat"), 95), "ingress.lat", 95),
    ("ingress lon missing", _delete(("ingress", "lon")), "ingress.lon", None),
    ("ingress name empty", _set(("ingress", "name"), ""), "ingress.name", ""),
    ("unknown root field", _set(("swarm",), 1), "swarm", 1),
    ("description not text", _set(("description",), ["a"]), "description", ["a"]),
]


@pytest.mark.parametrize(("case", "edit", "field", "value"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_names_the_field_and_the_value(resolver, case, edit, field, value) -> None:
    data = copy.deepcopy(valid_file())
    edit(data)
    with pytest.raises(InvalidInput) as caught:
        parse_swarm(data, resolver=resolver)
    error = caught.value
    assert error.field == field, case
    if value == "nan":
        assert math.isnan(error.value)
    else:
        assert error.value == value and type(error.value) is type(value)
    assert str(error).startswith(f"{field}=")


@pytest.mark.parametrize("root", [[], "peers", 3, None])
def test_a_root_that_is_not_an_object_is_rejected(resolver, root) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_swarm(root, resolver=resolver)
    assert (caught.value.field, caught.value.value) == ("root", root)


def test_a_swarm_refuses_duplicate_ids() -> None:
    peer = Peer("a", 0.0, 0.0, 10.0, 100.0, CarbonSource.EXPLICIT)
    with pytest.raises(InvalidInput) as caught:
        Swarm(Ingress(0.0, 0.0), (peer, peer))
    assert (caught.value.field, caught.value.value) == ("peers[1].id", "a")


def test_a_swarm_is_frozen(resolver) -> None:
    swarm = parse_swarm(valid_file(), resolver=resolver)
    with pytest.raises(dataclasses.FrozenInstanceError):
        swarm.peers = ()  # type: ignore[misc]


def test_load_swarm_reads_a_file(tmp_path, resolver) -> None:
    path = tmp_path / "peers.json"
    path.write_text(json.dumps(valid_file()))
    assert [p.id for p in load_swarm(path, resolver=resolver).peers] == ["paris", "belgium", "home"]


def test_a_missing_file_is_invalid_input(tmp_path, resolver) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(InvalidInput) as caught:
        load_swarm(path, resolver=resolver)
    assert (caught.value.field, caught.value.value) == ("peers_file", str(path))


def test_a_directory_is_invalid_input(tmp_path, resolver) -> None:
    with pytest.raises(InvalidInput) as caught:
        load_swarm(tmp_path, resolver=resolver)
    assert caught.value.field == "peers_file"


def test_bad_json_is_invalid_input_with_its_line(tmp_path, resolver) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "peers": [\n    {"id": "a",}\n  ]\n}\n')
    with pytest.raises(InvalidInput) as caught:
        load_swarm(path, resolver=resolver)
    assert (caught.value.field, caught.value.value) == ("peers_file", str(path))
    assert "line 3" in caught.value.reason


def test_a_nan_literal_in_the_file_is_caught_at_its_field(tmp_path, resolver) -> None:
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(valid_file()).replace('"free_vram_gb": 70', '"free_vram_gb": NaN'))
    with pytest.raises(InvalidInput) as caught:
        load_swarm(path, resolver=resolver)
    assert caught.value.field == "peers[0].free_vram_gb"


def test_without_a_resolver_the_offline_default_resolves(monkeypatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    peer = parse_swarm(valid_file()).peers[0]
    assert (peer.carbon_g_per_kwh, peer.carbon_source) == (31.0, CarbonSource.COUNTRY)


def test_with_a_live_resolver_peers_get_live_values_except_explicit_ones(monkeypatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    api, server = start_local_api()
    try:
        api.answer_json({"zone": "XX", "carbonIntensity": 222})
        live = CarbonResolver(token="t", api_url=api.url, timeout_s=1.0)
        sources = [(p.carbon_g_per_kwh, p.carbon_source) for p in parse_swarm(valid_file(), resolver=live).peers]
    finally:
        server.shutdown()
        server.server_close()
    assert sources == [
        (222.0, CarbonSource.ELECTRICITYMAPS),
        (222.0, CarbonSource.ELECTRICITYMAPS),
        (15.0, CarbonSource.EXPLICIT),
    ]


# The demo swarm ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(resolver) -> Swarm:
    return load_swarm(DEMO_SWARM_PATH, resolver=resolver)


def test_the_demo_swarm_spans_all_six_inhabited_continents(demo) -> None:
    assert len(demo.peers) >= 35
    locator = CountryLocator()
    continents = {locator.locate(p.lat, p.lon).continent for p in demo.peers}
    assert continents >= {"Europe", "North America", "South America", "Africa", "Asia", "Oceania"}
    assert demo.ingress.name == "Frankfurt"


def test_the_demo_swarm_holds_llama_70b_together_but_no_peer_alone(demo) -> None:
    assert max(p.free_vram_gb for p in demo.peers) < LLAMA_70B_BF16_GB
    assert demo.total_free_vram_gb > 3 * LLAMA_70B_BF16_GB


def test_the_demo_gpus_are_known_and_their_free_vram_below_the_card(demo) -> None:
    for peer in demo.peers:
        assert peer.gpu in GPU_TABLE, peer.id  # exact key of the planner's GPU table
        assert peer.gpu in GPU_TOTAL_GB, peer.id
        assert 0 < peer.free_vram_gb < GPU_TOTAL_GB[peer.gpu], peer.id


def test_the_demo_mixes_carbon_sources_and_measured_rtts(demo) -> None:
    sources = [p.carbon_source for p in demo.peers]
    assert sources.count(CarbonSource.EXPLICIT) >= 2
    assert sources.count(CarbonSource.REGION) >= 3
    assert sources.count(CarbonSource.COUNTRY) > len(sources) / 2
    assert CarbonSource.DEFAULT not in sources  # every demo city lies in a country with data
    assert sum(p.rtt_ms is not None for p in demo.peers) >= 5


def test_a_peers_file_saved_with_a_utf8_bom_is_read(resolver, tmp_path) -> None:
    # Notepad and PowerShell 5 write UTF-8 with a BOM; json.loads rejected the whole file.
    path = tmp_path / "peers.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(valid_file()).encode("utf-8"))
    swarm = load_swarm(path, resolver=resolver)
    assert [p.id for p in swarm.peers] == ["paris", "belgium", "home"]


def test_an_empty_key_in_a_peers_file_is_named_not_blank(tmp_path):
    path = tmp_path / "peers.json"
    path.write_text(json.dumps({"": 1, "ingress": {"name": "x", "lat": 0, "lon": 0}, "peers": []}))
    with pytest.raises(InvalidInput) as caught:
        load_swarm(path)
    assert caught.value.field == "<top level> key ''"
