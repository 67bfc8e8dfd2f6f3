"""Validate the planner's inputs and turn the peers into numpy columns, once per call.

Every rejection is an InvalidInput naming the field (``peers[3].lat``) and the value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from operator import attrgetter

import numpy as np

from engine.errors import InvalidInput
from engine.geo import distances_from_km
from engine.model.footprint import ModelFootprint
from engine.planning.latency import ingress_one_way_ms
from engine.planning.types import Ingress, Peer, Weights
from engine.validate import finite_number


@dataclass(frozen=True, eq=False)
class PeerColumns:
    """One numpy array per peer attribute the planning maths needs (index = position in peers)."""

    lat: np.ndarray
    lon: np.ndarray
    free_vram_gb: np.ndarray
    carbon_g_per_kwh: np.ndarray
    rtt_ms: np.ndarray            # NaN where not measured
    ms_per_layer: np.ndarray      # measured decode ms per layer; NaN where not measured
    ingress_km: np.ndarray        # great-circle km to the ingress
    ingress_ms: np.ndarray        # one-way latency to the ingress (measured RTT/2 wins)


_NUMERIC = ("lat", "lon", "free_vram_gb", "carbon_g_per_kwh", "rtt_ms", "tflops", "power_w",
            "ms_per_layer", "head_ms")
_OPTIONAL = {"rtt_ms", "tflops", "power_w", "ms_per_layer", "head_ms"}


def _columns(peers: tuple[Peer, ...]) -> dict[str, np.ndarray]:
    """Every numeric attribute as a float64 column (None -> NaN), in one pass over the peers."""
    if not peers:
        return {name: np.zeros(0) for name in _NUMERIC}
    out = {}
    for name in _NUMERIC:
        values = list(map(attrgetter(name), peers))
        if name in _OPTIONAL and None in values:
            values = [math.nan if v is None else v for v in values]
        array = np.array(values)               # dtype inferred in C; strings and None show up
        if array.dtype.kind not in "fi":
            for i, value in enumerate(values):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise InvalidInput(f"peers[{i}].{name}", value, "expected a number")
        out[name] = array.astype(np.float64)
    return out


def _check(column: np.ndarray, bad: np.ndarray, peers: tuple[Peer, ...], name: str,
           reason: str) -> None:
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidInput(f"peers[{i}].{name}", getattr(peers[i], name), reason)


def peer_columns(peers: tuple[Peer, ...], ingress: Ingress) -> PeerColumns:
    """Columns of `peers` (validated) with distances and latencies to `ingress`."""
    if not isinstance(peers, (tuple, list)):
        raise InvalidInput("peers", type(peers).__name__, "expected a tuple of Peer")
    peers = tuple(peers)
    if not all(type(p) is Peer for p in peers):      # fast path; subclasses are fine too
        for i, p in enumerate(peers):
            if not isinstance(p, Peer):
                raise InvalidInput(f"peers[{i}]", type(p).__name__, "expected a Peer")
    ids = [p.id for p in peers]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        for i, pid in enumerate(ids):
            if pid in seen:
                raise InvalidInput(f"peers[{i}].id", pid, "duplicate peer id")
            seen.add(pid)
    cols = _columns(peers)
    lat, lon, free, carbon = cols["lat"], cols["lon"], cols["free_vram_gb"], cols["carbon_g_per_kwh"]
    rtt, tflops, power = cols["rtt_ms"], cols["tflops"], cols["power_w"]
    with np.errstate(invalid="ignore"):
        _check(lat, ~(np.abs(lat) <= 90), peers, "lat", "expected degrees in [-90, 90]")
        _check(lon, ~(np.abs(lon) <= 180), peers, "lon", "expected degrees in [-180, 180]")
        _check(free, ~(np.isfinite(free) & (free >= 0)), peers, "free_vram_gb",
               "expected a finite number of GB >= 0")
        _check(carbon, ~(np.isfinite(carbon) & (carbon >= 0)), peers, "carbon_g_per_kwh",
               "expected a finite intensity >= 0")
        _check(rtt, ~(np.isnan(rtt) | ((rtt >= 0) & np.isfinite(rtt))), peers, "rtt_ms",
               "expected a finite round trip >= 0 ms or None")
        _check(tflops, ~(np.isnan(tflops) | ((tflops > 0) & np.isfinite(tflops))), peers,
               "tflops", "expected a finite TFLOPS > 0 or None")
        _check(power, ~(np.isnan(power) | ((power > 0) & np.isfinite(power))), peers,
               "power_w", "expected a finite power > 0 W or None")
        for name in ("ms_per_layer", "head_ms"):
            _check(cols[name], ~(np.isnan(cols[name]) | ((cols[name] > 0) & np.isfinite(cols[name]))),
                   peers, name, "expected a finite time > 0 ms or None")
    for i, peer in enumerate(peers):
        if peer.rtt_ms_to:
            _check_rtts(peer.rtt_ms_to, f"peers[{i}].rtt_ms_to")
    check_ingress(ingress)
    ingress_km = distances_from_km(ingress.lat, ingress.lon, lat, lon)
    return PeerColumns(lat, lon, free, carbon, rtt, cols["ms_per_layer"], ingress_km,
                       ingress_one_way_ms(ingress_km, rtt))


def _check_rtts(rtts: object, where: str) -> None:
    if not isinstance(rtts, tuple):
        raise InvalidInput(where, rtts, "expected a tuple of (peer id, ms) pairs")
    for j, pair in enumerate(rtts):
        ok = (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)
              and not isinstance(pair[1], bool) and isinstance(pair[1], (int, float))
              and math.isfinite(pair[1]) and pair[1] >= 0)
        if not ok:
            raise InvalidInput(f"{where}[{j}]", pair, "expected (peer id, finite ms >= 0)")


def check_ingress(ingress: Ingress) -> None:
    if not isinstance(ingress, Ingress):
        raise InvalidInput("ingress", type(ingress).__name__, "expected an Ingress")
    for name, limit in (("lat", 90.0), ("lon", 180.0)):
        finite_number(getattr(ingress, name), f"ingress.{name}", minimum=-limit, maximum=limit)


def check_weights(weights: Weights) -> Weights:
    """The weights, normalised to sum 1 (all zero -> equal thirds); negatives are rejected."""
    if not isinstance(weights, Weights):
        raise InvalidInput("weights", type(weights).__name__, "expected a Weights")
    for f in fields(Weights):
        finite_number(getattr(weights, f.name), f"weights.{f.name}", minimum=0.0)
    return weights.normalised()


def check_footprint(footprint: ModelFootprint) -> None:
    if not isinstance(footprint, ModelFootprint):
        raise InvalidInput("footprint", type(footprint).__name__, "expected a ModelFootprint")
    n = footprint.num_layers
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidInput("footprint.num_layers", n, "expected an integer >= 1")
    for name in ("layer_bytes", "embedding_bytes", "final_norm_bytes", "lm_head_bytes",
                 "kv_bytes_per_layer", "activation_bytes", "layer_flops_per_token",
                 "head_flops_per_token"):
        value = getattr(footprint, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidInput(f"footprint.{name}", value, "expected an integer >= 0")
    if footprint.layer_bytes + footprint.kv_bytes_per_layer <= 0:
        raise InvalidInput("footprint.layer_bytes", footprint.layer_bytes,
                           "a decoder layer must take some bytes")
    margin = footprint.safety_margin
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 1:
        raise InvalidInput("footprint.safety_margin", margin, "expected a fraction in [0, 1)")
