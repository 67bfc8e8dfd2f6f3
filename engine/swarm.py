"""The peers file: parse and validate a swarm, resolve each peer's carbon intensity, give planning Peers.

Format (JSON object):
    {"ingress": {"name": "Frankfurt", "lat": 50.11, "lon": 8.68},
     "peers": [{"id": "paris-a100", "lat": 48.86, "lon": 2.35, "free_vram_gb": 72.5,
                "carbon_g_per_kwh": 40,      # optional: explicit value, wins over everything
                "region": "europe-west9",    # optional: Google Cloud region for the offline value
                "gpu": "A100 80GB",          # optional: GPU table name (engine.planning.gpus)
                "tflops": 312, "power_w": 400, "rtt_ms": 9.5,     # optional overrides
                "country": "FR"}],           # optional: ISO 3166 alpha-2, else found by location
     "description": "..."}                   # optional, ignored
Every bad value raises InvalidInput naming its path (``peers[2].free_vram_gb``) and the value.
Unknown keys are rejected too, so a typo ("free_vram") cannot silently drop a value.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from engine.carbon import CarbonResolver
from engine.carbon_values import CarbonSignal, SignalKind
from engine.errors import InvalidInput
from engine.paths import ASSETS_DIR
from engine.planning.targets import country_code
from engine.planning.types import Ingress, Peer
from engine.validate import finite_number, printable_text, read_json_file

DEMO_SWARM_PATH = ASSETS_DIR / "swarms" / "demo.json"
MAX_PEERS_FILE_BYTES = 16 * 2**20  # a peers file is small; refuse to read a stray multi-GB file

_ROOT_KEYS = {"ingress", "peers", "description"}
_INGRESS_KEYS = {"name", "lat", "lon"}
_PEER_REQUIRED = ("id", "lat", "lon", "free_vram_gb")
_PEER_OPTIONAL = ("carbon_g_per_kwh", "region", "gpu", "tflops", "power_w", "rtt_ms", "country")


@dataclass(frozen=True)
class Swarm:
    ingress: Ingress
    peers: tuple[Peer, ...]
    signals: tuple[CarbonSignal, ...] = ()   # each peer's carbon signal (same order), when resolved here

    def __post_init__(self) -> None:
        object.__setattr__(self, "peers", tuple(self.peers))  # a list passed in must not stay mutable
        object.__setattr__(self, "signals", tuple(self.signals))
        if self.signals and len(self.signals) != len(self.peers):
            raise InvalidInput("signals", len(self.signals), f"expected one per peer ({len(self.peers)})")
        seen: set[str] = set()
        for index, peer in enumerate(self.peers):
            if peer.id in seen:
                raise InvalidInput(f"peers[{index}].id", peer.id, "duplicate peer id")
            seen.add(peer.id)

    @property
    def total_free_vram_gb(self) -> float:
        return sum(peer.free_vram_gb for peer in self.peers)

    def peer(self, peer_id: str) -> Peer:
        for candidate in self.peers:
            if candidate.id == peer_id:
                return candidate
        raise InvalidInput("peer_id", peer_id, "no peer with this id in the swarm")


def parse_swarm(
    data: Any,
    resolver: CarbonResolver | None = None,
    ingress_override: Ingress | None = None,
    signal: SignalKind = SignalKind.AVERAGE,
) -> Swarm:
    """Validate a decoded peers file and resolve carbon (`signal` average or marginal) for all peers at
    once; `ingress_override` replaces the file's ingress."""
    root = _object(data, "root")
    _no_unknown_keys(root, _ROOT_KEYS, "")
    if "description" in root and not isinstance(root["description"], str):
        raise InvalidInput("description", root["description"], "expected a string")
    if "ingress" in root:
        ingress = _ingress(root["ingress"])
    elif ingress_override is None:
        raise InvalidInput("ingress", None, "missing: the peers file must name an ingress (or pass one)")
    if ingress_override is not None:
        ingress = ingress_override

    if "peers" not in root:
        raise InvalidInput("peers", None, "missing: expected a list of peer objects")
    raw_peers = root["peers"]
    if not isinstance(raw_peers, list):
        raise InvalidInput("peers", raw_peers, f"expected a list of peer objects, got {_kind(raw_peers)}")
    if not raw_peers:
        raise InvalidInput("peers", raw_peers, "expected at least one peer")

    resolver = resolver if resolver is not None else CarbonResolver(use_env=True)
    fields: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_peers):
        peer = _peer_fields(raw, f"peers[{index}]")
        if peer["id"] in seen:
            raise InvalidInput(f"peers[{index}].id", peer["id"], f"duplicate peer id (also peers[{seen[peer['id']]}])")
        seen[peer["id"]] = index
        fields.append(peer)
    signals = resolver.signals(
        [f["lat"] for f in fields], [f["lon"] for f in fields],
        [f.pop("explicit") for f in fields], [f.pop("region") for f in fields],
        kind=signal, paths=[f"peers[{i}]" for i in range(len(fields))],
    )
    peers = tuple(Peer(**f, carbon_g_per_kwh=s.g_per_kwh, carbon_source=s.source)
                  for f, s in zip(fields, signals, strict=True))
    return Swarm(ingress=ingress, peers=peers, signals=tuple(signals))


def load_swarm(
    path: str | Path,
    resolver: CarbonResolver | None = None,
    ingress_override: Ingress | None = None,
    signal: SignalKind = SignalKind.AVERAGE,
) -> Swarm:
    """Read and parse a peers file; unreadable files and bad JSON raise InvalidInput("peers_file", path, ...)."""
    data = read_json_file(path, "peers_file", MAX_PEERS_FILE_BYTES)
    return parse_swarm(data, resolver=resolver, ingress_override=ingress_override, signal=signal)


def _ingress(raw: Any) -> Ingress:
    obj = _object(raw, "ingress")
    _no_unknown_keys(obj, _INGRESS_KEYS, "ingress")
    lat = _coordinate(obj, "lat", "ingress", 90.0)
    lon = _coordinate(obj, "lon", "ingress", 180.0)
    name = _optional_text(obj, "name", "ingress") or "ingress"
    return Ingress(lat=lat, lon=lon, name=name)


def _peer_fields(raw: Any, path: str) -> dict[str, Any]:
    """A peer's validated fields; its carbon is resolved later, for all peers at once."""
    obj = _object(raw, path)
    _no_unknown_keys(obj, set(_PEER_REQUIRED) | set(_PEER_OPTIONAL), path)
    for key in _PEER_REQUIRED:
        if key not in obj:
            raise InvalidInput(f"{path}.{key}", None, "missing required field")
    peer_id = _text(obj["id"], f"{path}.id")
    lat = _coordinate(obj, "lat", path, 90.0)
    lon = _coordinate(obj, "lon", path, 180.0)
    # Upper bounds far above any real device or grid, low enough that no estimate overflows to inf.
    free_vram_gb = _number(obj["free_vram_gb"], f"{path}.free_vram_gb", minimum=0.0, maximum=1e6)
    explicit = _optional_number(obj, "carbon_g_per_kwh", path, minimum=0.0, maximum=5000.0)
    region = _optional_text(obj, "region", path)
    gpu = _optional_text(obj, "gpu", path)
    # Zero TFLOPS or zero watts would make time and energy estimates meaningless (divide by zero).
    tflops = _optional_number(obj, "tflops", path, minimum=0.001, maximum=1e5)
    power_w = _optional_number(obj, "power_w", path, minimum=0.001, maximum=1e5)
    rtt_ms = _optional_number(obj, "rtt_ms", path, minimum=0.0, maximum=1e6)
    country = _optional_text(obj, "country", path)
    if country is not None:
        country = country_code(country, f"{path}.country")
    return dict(id=peer_id, lat=lat, lon=lon, free_vram_gb=free_vram_gb, explicit=explicit, region=region,
                gpu=gpu, tflops=tflops, power_w=power_w, rtt_ms=rtt_ms, country=country)


def with_countries(swarm: Swarm, resolver: CarbonResolver | None = None) -> Swarm:
    """The swarm with each peer's country (ISO 3166 alpha-2) found under its coordinates where the
    file did not give one: the same Natural Earth lookup the carbon resolver uses. Done on demand
    (placement by country), since reading the country polygons takes about a second."""
    if all(p.country is not None for p in swarm.peers):
        return swarm
    locator = (resolver if resolver is not None else CarbonResolver(use_env=False)).locator
    todo = [i for i, p in enumerate(swarm.peers) if p.country is None]
    found = locator.locate_many(np.array([swarm.peers[i].lat for i in todo]),
                                np.array([swarm.peers[i].lon for i in todo]))
    peers = list(swarm.peers)
    for i, country in zip(todo, found, strict=True):
        peers[i] = replace(peers[i], country=country.iso2 if country is not None else None)
    return replace(swarm, peers=tuple(peers))


def _object(raw: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidInput(path, raw, f"expected a JSON object, got {_kind(raw)}")
    return raw


def _no_unknown_keys(obj: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for key in obj:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            where = where if key else f"{path or '<top level>'} key ''"      # an empty key still names a place
            raise InvalidInput(where, obj[key], "unknown field; expected one of " + ", ".join(sorted(allowed)))


def _text(raw: Any, path: str) -> str:
    if not isinstance(raw, str):
        raise InvalidInput(path, raw, f"expected a string, got {_kind(raw)}")
    printable_text(raw, path)            # ids and names reach terminals and tables
    if not raw.strip():
        raise InvalidInput(path, raw, "must not be empty")
    return raw.strip()


def _optional_text(obj: Mapping[str, Any], key: str, path: str) -> str | None:
    if key not in obj or obj[key] is None:
        return None
    return _text(obj[key], f"{path}.{key}")


def _number(raw: Any, path: str, minimum: float | None = None, allow_zero: bool = True,
            maximum: float | None = None) -> float:
    return finite_number(raw, path, minimum=minimum, above_minimum=not allow_zero, maximum=maximum)


def _optional_number(
    obj: Mapping[str, Any], key: str, path: str, minimum: float, allow_zero: bool = True,
    maximum: float | None = None,
) -> float | None:
    if key not in obj or obj[key] is None:
        return None
    return _number(obj[key], f"{path}.{key}", minimum=minimum, allow_zero=allow_zero, maximum=maximum)


def _coordinate(obj: Mapping[str, Any], key: str, path: str, limit: float) -> float:
    field = f"{path}.{key}"
    if key not in obj:
        raise InvalidInput(field, None, "missing required field")
    value = _number(obj[key], field)
    if not -limit <= value <= limit:
        raise InvalidInput(field, obj[key], f"expected degrees in [-{limit:g}, {limit:g}]")
    return value


def _kind(raw: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(raw), type(raw).__name__
    )


def synthetic_peers(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """`count` reproducible peers-file entries over land-ish latitudes with mixed GPUs and carbon.

    For load tests and benchmarks of large swarms (the demo swarm has 44 real cities)."""
    rnd = random.Random(seed)
    gpus = [("RTX 4090", 24), ("A100 80GB", 80), ("H100 80GB", 80), ("RTX 3090", 24), ("L40S", 48)]
    peers = []
    for i in range(count):
        gpu, vram = rnd.choice(gpus)
        peers.append({"id": f"p{i:04d}", "lat": round(rnd.uniform(-40, 62), 3),
                      "lon": round(rnd.uniform(-125, 150), 3), "gpu": gpu,
                      "free_vram_gb": round(vram * rnd.uniform(0.3, 0.95), 1),
                      "carbon_g_per_kwh": round(rnd.uniform(15, 750), 1)})
    return peers
