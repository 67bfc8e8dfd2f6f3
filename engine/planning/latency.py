"""One-way network latency estimated from great-circle distance, or taken from a measured RTT."""

from __future__ import annotations

import numpy as np

FIBRE_KM_PER_MS = 200.0
"""Light in silica fibre travels at about c / 1.47 ≈ 204 km/ms; 200 is the usual rule of thumb."""

ROUTE_FACTOR = 1.5
"""Real fibre routes are longer than the great circle; ~1.5× is typical for long-haul paths
(e.g. Singla et al., "The Internet at the speed of light", HotNets 2014, measured ~1.5-2×)."""

PER_LEG_OVERHEAD_MS = 0.5
"""Switching, serialisation and the last mile: a small fixed cost per leg, even at 0 km."""


def one_way_ms(distance_km: np.ndarray | float) -> np.ndarray:
    """Estimated one-way latency of a leg: distance × route factor / fibre speed + overhead."""
    return np.asarray(distance_km, dtype=np.float64) * (ROUTE_FACTOR / FIBRE_KM_PER_MS) \
        + PER_LEG_OVERHEAD_MS


def ingress_one_way_ms(distance_km: np.ndarray, rtt_ms: np.ndarray) -> np.ndarray:
    """One-way latency between each peer and the ingress: a measured RTT (not NaN) wins, as RTT/2."""
    estimated = one_way_ms(distance_km)
    rtt_ms = np.asarray(rtt_ms, dtype=np.float64)
    return np.where(np.isnan(rtt_ms), estimated, rtt_ms / 2.0)
