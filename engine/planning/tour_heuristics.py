"""Heuristic closed tours for many stages: nearest neighbour, then 2-opt + Or-opt local search
(best improvement, vectorised over all n² moves), then iterated local search (tour_ils); above
CLUSTER_MIN_NODES a geographic split into k-means clusters keeps the work near-linear.

Deterministic: no clocks, and the ILS kicks come from a generator seeded by the problem size.
"""

from __future__ import annotations

import numpy as np

from engine.planning.tour_ils import LOCAL_KICK_SPAN, iterated_local_search

CLUSTER_MIN_NODES = 400    # above this, tour clusters separately (k-means on the sphere)
CLUSTER_NODES = 60         # target nodes per cluster
KICKS_PER_NODE = 8         # ILS kicks per node: ~0.5 % above LKH at 100 nodes (bench_planner)
MAX_KICKS = 1200
_EPS = 1e-9


def nearest_neighbour_cycle(dist: np.ndarray, start: int = 0) -> np.ndarray:
    """Greedy tour: always go to the closest unvisited node."""
    n = dist.shape[0]
    visited = np.zeros(n, dtype=bool)
    tour = np.empty(n, dtype=np.int64)
    node = start
    for k in range(n):
        tour[k] = node
        visited[node] = True
        if k < n - 1:
            row = np.where(visited, np.inf, dist[node])
            node = int(np.argmin(row))
    return tour


def _cross(dist: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """dist[rows][:, cols] as one flat gather (much cheaper than np.ix_ for small blocks)."""
    return dist.ravel()[rows[:, None] * dist.shape[1] + cols[None, :]]


def _two_opt(dist: np.ndarray, tour: np.ndarray, rows: np.ndarray) -> tuple[float, tuple]:
    """Best 2-opt move dropping edge (r, r+1) for r in `rows` and any other edge (j, j+1)."""
    n = len(tour)
    nxt = np.roll(tour, -1)
    a, b = tour[rows], nxt[rows]
    delta = (_cross(dist, a, tour) + _cross(dist, b, nxt)
             - dist[a, b][:, None] - dist[tour, nxt][None, :])
    offsets = (np.arange(n)[None, :] - rows[:, None]) % n
    delta[(offsets <= 1) | (offsets == n - 1)] = np.inf
    flat = int(np.argmin(delta))
    r, j = int(rows[flat // n]), flat % n
    return float(delta.flat[flat]), ("2opt", min(r, j), max(r, j))


def _or_opt(dist: np.ndarray, tour: np.ndarray, starts: np.ndarray,
            edges: np.ndarray) -> tuple[float, tuple]:
    """Best move of a segment of 1-3 nodes starting at `starts` into an edge of `edges`."""
    n = len(tour)
    best, move = np.inf, ("none",)
    te, ten = tour[edges], tour[(edges + 1) % n]
    edge_len = dist[te, ten][None, :]
    for seg in (1, 2, 3):
        if n < seg + 3:
            break
        s0, s1 = tour[starts], tour[(starts + seg - 1) % n]
        before, after = tour[(starts - 1) % n], tour[(starts + seg) % n]
        gain = dist[before, s0] + dist[s1, after] - dist[before, after]
        fwd = _cross(dist, s0, te) + _cross(dist, s1, ten) - edge_len
        if seg == 1:
            rev = fwd
        else:
            rev = _cross(dist, s1, te) + _cross(dist, s0, ten) - edge_len
        delta = np.minimum(fwd, rev) - gain[:, None]
        offsets = (edges[None, :] - starts[:, None]) % n
        delta[(offsets < seg) | (offsets == n - 1)] = np.inf
        flat = int(np.argmin(delta))
        if delta.flat[flat] < best:
            a, e = flat // len(edges), flat % len(edges)
            best = float(delta.flat[flat])
            move = ("oropt", int(starts[a]), int(edges[e]), seg, bool(rev[a, e] < fwd[a, e]))
    return best, move


def _best_move(dist: np.ndarray, tour: np.ndarray) -> tuple[float, tuple]:
    """The most improving 2-opt or Or-opt move over the whole tour, and its delta."""
    every = np.arange(len(tour))
    best, move = _two_opt(dist, tour, every)
    delta, candidate = _or_opt(dist, tour, every, every)
    if delta < best:
        best, move = delta, candidate
    return best, move


def _apply(tour: np.ndarray, move: tuple) -> np.ndarray:
    n = len(tour)
    if move[0] == "2opt":
        _, i, j = move
        out = tour.copy()
        out[i + 1:j + 1] = tour[i + 1:j + 1][::-1]
        return out
    _, i, j, seg, reverse = move
    positions = (i + np.arange(seg)) % n
    segment = tour[positions]
    if reverse:
        segment = segment[::-1]
    anchor = tour[j]
    rest = np.delete(tour, positions)
    at = int(np.flatnonzero(rest == anchor)[0]) + 1
    return np.concatenate([rest[:at], segment, rest[at:]])


def local_search(dist: np.ndarray, tour: np.ndarray) -> np.ndarray:
    """Best-improvement 2-opt + Or-opt, each step one vectorised scan, until no move helps."""
    if len(tour) < 5:
        return tour
    while True:
        delta, move = _best_move(dist, tour)
        if delta >= -_EPS:
            return tour
        tour = _apply(tour, move)


def kicks_for(n: int) -> int:
    """How many ILS kicks a tour of n nodes gets: linear in n, capped."""
    return min(MAX_KICKS, KICKS_PER_NODE * n)


def _rotate_to_zero(tour: np.ndarray) -> list[int]:
    at = int(np.flatnonzero(tour == 0)[0])
    return [int(x) for x in np.roll(tour, -at)]


def heuristic_cycle(dist: np.ndarray, points: np.ndarray | None = None) -> list[int]:
    """A short closed tour through all nodes of `dist`, starting at node 0.

    `points` (n×3 unit vectors) enables geographic clustering for very large instances.
    """
    n = dist.shape[0]
    if n > CLUSTER_MIN_NODES and points is not None:
        return _rotate_to_zero(_clustered_cycle(dist, points))
    tour = local_search(dist, nearest_neighbour_cycle(dist, 0))
    tour = iterated_local_search(dist, tour, kicks_for(n))
    return _rotate_to_zero(tour)


def _kmeans(points: np.ndarray, k: int, iterations: int = 12) -> np.ndarray:
    """Cluster labels from Lloyd's k-means, seeded by points spread along the longitude order."""
    order = np.argsort(np.arctan2(points[:, 1], points[:, 0]), kind="stable")
    centres = points[order[np.linspace(0, len(points) - 1, k).astype(np.int64)]]
    labels = np.zeros(len(points), dtype=np.int64)
    for _ in range(iterations):
        labels = np.argmax(points @ centres.T, axis=1)    # nearest on the sphere = largest dot
        for c in range(k):
            members = points[labels == c]
            if len(members):
                centres[c] = members.mean(axis=0)
    return labels


def _open_path(dist: np.ndarray, nodes: np.ndarray, entry: int, exit_: int) -> np.ndarray:
    """Short path over `nodes` from entry to exit (node ids), via a forced closing edge."""
    if len(nodes) <= 2:
        return np.array([entry] + ([exit_] if exit_ != entry else []), dtype=np.int64)
    sub = dist[np.ix_(nodes, nodes)].copy()
    a = int(np.flatnonzero(nodes == entry)[0])
    b = int(np.flatnonzero(nodes == exit_)[0])
    sub[a, b] = sub[b, a] = -(float(sub.sum()) + 1.0)
    cycle = local_search(sub, nearest_neighbour_cycle(sub, a))
    cycle = iterated_local_search(sub, cycle, kicks_for(len(nodes)) // 4)
    at = int(np.flatnonzero(cycle == a)[0])
    cycle = np.roll(cycle, -at)
    if cycle[-1] != b:              # the forced edge a-b closes the cycle; walk away from it
        cycle = np.concatenate([[a], cycle[1:][::-1]])
    return nodes[cycle]


def _clustered_cycle(dist: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Tour the cluster centroids, then each cluster as a path from where the last one left off."""
    n = dist.shape[0]
    k = max(2, int(np.ceil(n / CLUSTER_NODES)))
    labels = _kmeans(points, k)
    clusters = [np.flatnonzero(labels == c) for c in range(k)]
    clusters = [c for c in clusters if len(c)]
    centres = np.array([points[c].mean(axis=0) for c in clusters])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    chord = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=-1)
    order = heuristic_cycle(chord)
    pieces = []
    prev_exit: int | None = None
    for pos, c in enumerate(order):
        nodes = clusters[c]
        nxt_centre = centres[order[(pos + 1) % len(order)]]
        if prev_exit is None:
            entry = int(nodes[np.argmax(points[nodes] @ centres[order[-1]])])
        else:
            entry = int(nodes[np.argmin(dist[prev_exit, nodes])])
        toward_next = np.argsort(-(points[nodes] @ nxt_centre), kind="stable")
        exit_ = int(nodes[toward_next[0]])
        if exit_ == entry and len(nodes) > 1:
            exit_ = int(nodes[toward_next[1]])
        pieces.append(_open_path(dist, nodes, entry, exit_))
        prev_exit = int(pieces[-1][-1])
    tour = np.concatenate(pieces)
    return iterated_local_search(dist, tour, kicks_for(n), span=LOCAL_KICK_SPAN)
