"""Shared fixtures for the GUI tests: small peers files written to a temp dir."""

from __future__ import annotations

import json
import random

import pytest


def write_peers(path, peers, ingress=None):
    data = {"ingress": ingress or {"name": "Frankfurt", "lat": 50.11, "lon": 8.68}, "peers": peers}
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def tiny_swarm(tmp_path):
    """Two small peers: far too little VRAM for a 70B model."""
    return write_peers(tmp_path / "tiny.json", [
        {"id": "a", "lat": 48.86, "lon": 2.35, "free_vram_gb": 8.0, "carbon_g_per_kwh": 50, "gpu": "RTX 3070"},
        {"id": "b", "lat": 40.71, "lon": -74.0, "free_vram_gb": 12.0, "carbon_g_per_kwh": 400, "gpu": "RTX 3080"},
    ])


def synthetic_peers(count: int, seed: int = 7) -> list[dict]:
    """`count` peers scattered over land-ish latitudes with mixed GPUs and carbon (for load tests)."""
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
