"""Closed tours ingress -> stages -> ingress of minimum total length.

Exact Held-Karp (numpy-vectorised dynamic programme) up to HELD_KARP_MAX_STAGES stages; above
that a deterministic heuristic (see tour_heuristics). Tours are lists of node indices into a
symmetric distance matrix whose node 0 is the ingress; they start at 0 and do not repeat it.
"""

from __future__ import annotations

import numpy as np

from engine.planning.tour_heuristics import heuristic_cycle

HELD_KARP_MAX_STAGES = 12


def tour_length(dist: np.ndarray, tour: list[int] | np.ndarray) -> float:
    """Length of the closed tour (last node back to the first) under `dist`."""
    t = np.asarray(tour, dtype=np.int64)
    if len(t) < 2:
        return 0.0
    return float(dist[t, np.roll(t, -1)].sum())


def held_karp_cycle(dist: np.ndarray) -> list[int]:
    """Exact minimum closed tour through all nodes, starting at node 0 (Held & Karp 1962).

    dp[mask, j] = shortest path from node 0 through the nodes 1.. in `mask`, ending at node j+1.
    Masks are processed by popcount so each layer is one vectorised min over predecessors.
    """
    n = dist.shape[0]
    m = n - 1
    if m <= 1:
        return list(range(n))
    d = dist[1:, 1:]
    full = (1 << m) - 1
    dp = np.full((1 << m, m), np.inf)
    parent = np.full((1 << m, m), -1, dtype=np.int64)
    singles = 1 << np.arange(m)
    dp[singles, np.arange(m)] = dist[0, 1:]
    masks = np.arange(1 << m)
    popcount = np.zeros(1 << m, dtype=np.int64)
    for bit in range(m):
        popcount += (masks >> bit) & 1
    for size in range(2, m + 1):
        layer = masks[popcount == size]
        for j in range(m):
            with_j = layer[(layer >> j) & 1 == 1]
            prev = with_j ^ (1 << j)
            cand = dp[prev] + d[:, j][None, :]          # (masks, predecessor k)
            best = np.argmin(cand, axis=1)
            dp[with_j, j] = cand[np.arange(len(with_j)), best]
            parent[with_j, j] = best
    last = int(np.argmin(dp[full] + dist[1:, 0]))
    order = []
    mask = full
    while last >= 0:
        order.append(last + 1)
        prev_last = int(parent[mask, last])
        mask ^= 1 << last
        last = prev_last
    return [0] + order[::-1]


def best_cycle(dist: np.ndarray, points: np.ndarray | None = None) -> list[int]:
    """Shortest closed tour found through all nodes of `dist`, starting at node 0 (the ingress).

    Exact for up to HELD_KARP_MAX_STAGES + 1 nodes, heuristic above (`points`, the nodes as
    unit vectors, lets it cluster very large instances). Deterministic.
    """
    n = dist.shape[0]
    if n <= 3:
        return list(range(n))   # every tour of <= 3 nodes has the same length
    if n - 1 <= HELD_KARP_MAX_STAGES:
        return held_karp_cycle(dist)
    return heuristic_cycle(dist, points)


def cycle_with_fixed_ends(dist: np.ndarray, first: int, last: int,
                          points: np.ndarray | None = None) -> list[int]:
    """Shortest tour found 0 -> first -> ... -> last -> 0 (first != last, both != 0).

    The edges 0-first and 0-last are forced by making them very negative: any tour that drops
    one costs more than the whole matrix, so both the exact and the heuristic solver keep them.
    """
    forced = dist.copy()
    big = float(np.abs(dist).sum()) + 1.0
    forced[0, first] = forced[first, 0] = -big
    forced[0, last] = forced[last, 0] = -big
    tour = best_cycle(forced, points)
    if tour[1] != first:
        tour = [0] + tour[1:][::-1]
    return tour
