"""Shared fixtures for the GUI tests: small peers files written to a temp dir."""

from __future__ import annotations

import json

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
