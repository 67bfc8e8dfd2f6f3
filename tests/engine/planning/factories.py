"""Builders for planning inputs: footprints and peers made directly, no model files needed."""

from __future__ import annotations

import math

from hypothesis import strategies as st

from engine import GB
from engine.carbon_values import CarbonSource
from engine.model.footprint import ModelFootprint
from engine.planning.types import Ingress, Peer

MB = 2**20


def footprint(num_layers: int = 32, layer_mb: int = 400, embedding_mb: int = 500,
              lm_head_mb: int = 500, tied: bool = False, kv_mb: int = 64,
              activation_mb: int = 256, margin: float = 0.10, name: str = "test-model") -> ModelFootprint:
    return ModelFootprint(
        name=name, num_layers=num_layers, param_count=num_layers * layer_mb * MB // 2,
        quant="bf16", layer_bytes=layer_mb * MB, embedding_bytes=embedding_mb * MB,
        final_norm_bytes=8192, lm_head_bytes=lm_head_mb * MB, tied_embeddings=tied,
        kv_bytes_per_layer=kv_mb * MB, activation_bytes=activation_mb * MB,
        layer_flops_per_token=layer_mb * MB, head_flops_per_token=lm_head_mb * MB,
        safety_margin=margin)


def peer(pid: str, lat: float = 50.0, lon: float = 8.0, free_vram_gb: float = 24.0,
         carbon: float = 300.0, gpu: str | None = "RTX 4090", **extra) -> Peer:
    return Peer(id=pid, lat=lat, lon=lon, free_vram_gb=free_vram_gb, carbon_g_per_kwh=carbon,
                carbon_source=CarbonSource.EXPLICIT, gpu=gpu, **extra)


INGRESS = Ingress(50.11, 8.68, "frankfurt")

lats = st.floats(-80, 80, allow_nan=False)
lons = st.floats(-180, 180, allow_nan=False)


@st.composite
def footprints(draw) -> ModelFootprint:
    return footprint(
        num_layers=draw(st.integers(1, 60)),
        layer_mb=draw(st.integers(50, 2000)),
        embedding_mb=draw(st.integers(0, 4000)),
        lm_head_mb=draw(st.integers(0, 4000)),
        tied=draw(st.booleans()),
        kv_mb=draw(st.integers(0, 300)),
        activation_mb=draw(st.integers(0, 1000)),
        margin=draw(st.sampled_from([0.0, 0.05, 0.10, 0.25])),
    )


@st.composite
def swarms(draw, max_peers: int = 14) -> tuple[Peer, ...]:
    count = draw(st.integers(0, max_peers))
    max_vram_gb = draw(st.sampled_from([4.0, 12.0, 24.0, 80.0]))   # small peers: many stages
    return tuple(
        peer(f"p{i}", lat=draw(lats), lon=draw(lons),
             free_vram_gb=draw(st.floats(0, max_vram_gb, allow_nan=False)),
             carbon=draw(st.floats(0, 900, allow_nan=False)),
             gpu=draw(st.sampled_from([None, "RTX 4090", "A100 80GB", "T4", "mystery"])),
             rtt_ms=draw(st.none() | st.floats(1, 300)))
        for i in range(count))


def usable_bytes(p: Peer, fp: ModelFootprint) -> float:
    return p.free_vram_gb * GB * (1 - fp.safety_margin)


def max_layers(p: Peer, fp: ModelFootprint, *, first: bool, last: bool) -> int:
    """Most layers this peer can hold in a role, by counting up with stage_bytes (no shortcuts)."""
    room = usable_bytes(p, fp)
    count = 0
    while count < fp.num_layers and fp.stage_bytes(count + 1, first=first, last=last) <= math.floor(room):
        count += 1
    return count


def best_arrangement_layers(peers: tuple[Peer, ...], fp: ModelFootprint) -> int:
    """Most layers any arrangement of these peers places (every peer used, each >= 1 layer), by
    trying every (first, last) pair and every single peer."""
    mid = [max_layers(p, fp, first=False, last=False) for p in peers]
    best = 0
    for i, p in enumerate(peers):
        alone = max_layers(p, fp, first=True, last=True)
        if alone >= 1:
            best = max(best, alone)
        f = max_layers(p, fp, first=True, last=False)
        if f < 1 or fp.num_layers < 2:     # two stages need two layers
            continue
        for j, q in enumerate(peers):
            if j == i:
                continue
            la = max_layers(q, fp, first=False, last=True)
            if la < 1:
                continue
            others = sum(m for k, m in enumerate(mid) if k not in (i, j))
            best = max(best, f + la + others)
    return best
