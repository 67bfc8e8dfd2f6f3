"""The order in which each policy prefers peers.

Carbon policy score (lower is better), every term min-max normalised over the swarm:

    score = w_c · norm(carbon_g_per_kwh) + w_d · norm(ingress_ms) + w_v · (1 − norm(free_vram_gb))

with norm(x) = (x − min x) / (max x − min x) (0 for all peers when max = min) and the weights
normalised to sum 1. The distance term is the one-way latency to the ingress in ms: estimated
from great-circle km (engine.planning.latency) or half a measured RTT, so both share one unit.
"""

from __future__ import annotations

import numpy as np

from engine.planning.inputs import PeerColumns
from engine.planning.types import Policy, Weights


def min_max(values: np.ndarray) -> np.ndarray:
    """(x − min) / (max − min) over the array; all zeros when every value is the same."""
    lo = float(values.min()) if len(values) else 0.0
    span = float(values.max()) - lo if len(values) else 0.0
    if span <= 0:
        return np.zeros_like(values, dtype=np.float64)
    return (values - lo) / span


def carbon_scores(columns: PeerColumns, weights: Weights) -> np.ndarray:
    """The carbon policy's score per peer (lower is better); `weights` must be normalised."""
    return (weights.carbon * min_max(columns.carbon_g_per_kwh)
            + weights.distance * min_max(columns.ingress_ms)
            + weights.vram * (1.0 - min_max(columns.free_vram_gb)))


def policy_order(policy: Policy, columns: PeerColumns, weights: Weights) -> np.ndarray:
    """Peer indices, most preferred first. Ties keep the peers' input order (stable sorts).

    VRAM baseline: most free VRAM first, weights ignored. Carbon: best score first, ties to
    the peer with more free VRAM.
    """
    if policy is Policy.VRAM:
        return np.argsort(-columns.free_vram_gb, kind="stable")
    if policy is Policy.CARBON:
        return np.lexsort((-columns.free_vram_gb, carbon_scores(columns, weights)))
    raise ValueError(f"policy={policy!r}: expected a Policy")
