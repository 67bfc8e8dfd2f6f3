"""Which peers hold the model: the smallest set, in the policy's order, that fits it in whole layers.

A stage always holds at least one decoder layer. The first stage also holds the embeddings and
the last the final norm + lm_head, so a peer's capacity in layers depends on its role:
middle >= first, last >= single (first and last at once). Usable bytes per peer are
floor(free_vram_gb · GB · (1 − safety_margin)).

The swarm can hold the model iff some arrangement does, and adding a peer as a middle stage
never loses layers, so the best arrangement uses every peer that fits one layer, with the two
ends chosen to lose the fewest layers (or one peer alone). The selection takes the shortest
prefix of the policy order that can hold the model that way, so a feasible swarm always gets a
feasible plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine import GB
from engine.model.footprint import ModelFootprint


@dataclass(frozen=True, eq=False)
class Capacities:
    """Whole decoder layers each peer can hold in each role (clipped to the model's layers)."""

    usable_bytes: np.ndarray   # int64
    middle: np.ndarray
    first: np.ndarray
    last: np.ndarray
    single: np.ndarray

    def of_role(self, peer: int, *, first: bool, last: bool) -> int:
        table = (self.single if last else self.first) if first else (self.last if last else self.middle)
        return int(table[peer])


@dataclass(frozen=True)
class Selection:
    """Peers chosen (policy order) and the ends that are guaranteed to fit the model."""

    peers: tuple[int, ...]
    first: int
    last: int          # == first when one peer holds everything


@dataclass(frozen=True)
class Shortfall:
    """Why no plan exists: the free VRAM one more peer would need, and the layers left over."""

    shortfall_gb: float
    shortfall_layers: int


MAX_BYTES = 2**60
"""Byte counts saturate here (1 EiB, far beyond any GPU) so int64 sums and differences of usable
bytes and footprint terms cannot overflow: an absurd free_vram_gb or a huge context stays a
plan (or a shortfall), not an OverflowError or a wrapped-around capacity."""


def usable_bytes(free_vram_gb: np.ndarray, safety_margin: float) -> np.ndarray:
    free_gb = np.minimum(free_vram_gb, MAX_BYTES / GB)
    return np.floor(free_gb * (GB * (1.0 - safety_margin))).astype(np.int64)


def layer_capacities(footprint: ModelFootprint, free_vram_gb: np.ndarray) -> Capacities:
    """Capacities per role from exact integer byte counts (ModelFootprint.stage_bytes' terms)."""
    usable = usable_bytes(free_vram_gb, footprint.safety_margin)
    per_layer = footprint.layer_bytes + footprint.kv_bytes_per_layer
    head = footprint.final_norm_bytes + footprint.lm_head_bytes
    single_head = footprint.final_norm_bytes + (0 if footprint.tied_embeddings
                                                else footprint.lm_head_bytes)
    # Terms above MAX_BYTES exceed every peer's usable bytes: clamped to MAX_BYTES + 1 they
    # still fit nothing, and the int64 arithmetic below stays in range.
    cap = MAX_BYTES + 1
    room = usable - min(footprint.activation_bytes, cap)
    per_layer = min(per_layer, cap)
    n = footprint.num_layers

    def layers(extra_bytes: int) -> np.ndarray:
        return np.clip((room - min(extra_bytes, cap)) // per_layer, 0, n)

    return Capacities(usable, layers(0), layers(footprint.embedding_bytes), layers(head),
                      layers(footprint.embedding_bytes + single_head))


def _losses(caps: Capacities, peers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Layers lost by making each peer the first / the last stage (inf where it cannot be)."""
    mid = caps.middle[peers].astype(np.float64)
    loss_first = np.where(caps.first[peers] >= 1, mid - caps.first[peers], np.inf)
    loss_last = np.where(caps.last[peers] >= 1, mid - caps.last[peers], np.inf)
    return loss_first, loss_last


def best_two_ended(caps: Capacities, peers: np.ndarray) -> tuple[int, int, int] | None:
    """(layers, first, last) of the best arrangement of all `peers` with first != last, or None."""
    if len(peers) < 2:
        return None
    loss_first, loss_last = _losses(caps, peers)
    f = int(np.argmin(loss_first))
    ll = int(np.argmin(loss_last))
    if f == ll:
        # The same peer is the best at both ends: pair it with the runner-up at the other end.
        second_last = np.where(np.arange(len(peers)) == f, np.inf, loss_last)
        second_first = np.where(np.arange(len(peers)) == f, np.inf, loss_first)
        l2, f2 = int(np.argmin(second_last)), int(np.argmin(second_first))
        keep_first = loss_first[f] + second_last[l2]
        keep_last = second_first[f2] + loss_last[ll]
        if not math.isfinite(min(keep_first, keep_last)):
            return None
        if keep_first <= keep_last:
            ll = l2
        else:
            f = f2
    loss = loss_first[f] + loss_last[ll]
    if not math.isfinite(loss):
        return None
    total = int(caps.middle[peers].sum() - loss)
    return total, int(peers[f]), int(peers[ll])


def _fits(caps: Capacities, peers: np.ndarray, num_layers: int) -> bool:
    two = best_two_ended(caps, peers) if num_layers >= 2 else None   # a stage per layer at most
    return (two is not None and two[0] >= num_layers) or bool(caps.single[peers].max() >= num_layers)


def select_peers(footprint: ModelFootprint, caps: Capacities,
                 order: np.ndarray) -> Selection | Shortfall:
    """The shortest prefix of `order` that holds the model, without the peers it can do without."""
    n = footprint.num_layers
    candidates = order[caps.middle[order] >= 1]
    if len(candidates) == 0:
        return shortfall(footprint, caps, candidates)
    if caps.single[candidates[0]] >= n:
        p = int(candidates[0])
        return Selection((p,), p, p)
    # Upper bound on each prefix's layers (ends chosen independently) skips hopeless prefixes;
    # the exact check is monotone in the prefix length, so binary search the rest.
    loss_first, loss_last = _losses(caps, candidates)
    bound = (np.cumsum(caps.middle[candidates])
             - np.minimum.accumulate(loss_first) - np.minimum.accumulate(loss_last))
    bound = np.maximum(bound, np.maximum.accumulate(caps.single[candidates]))
    reach = np.flatnonzero(bound >= n)
    if len(reach) == 0 or not _fits(caps, candidates, n):
        return shortfall(footprint, caps, candidates)
    lo, hi = int(reach[0]) + 1, len(candidates)
    while lo < hi:
        mid = (lo + hi) // 2
        if _fits(caps, candidates[:mid], n):
            hi = mid
        else:
            lo = mid + 1
    prefix = _minimal(caps, candidates[:lo], n)
    two = best_two_ended(caps, prefix) if n >= 2 else None
    if two is None or two[0] < n:
        p = int(prefix[np.argmax(caps.single[prefix] >= n)])
        return Selection((p,), p, p)
    _, first, last = two
    placed = int(caps.first[first] + caps.last[last])
    chosen = [int(p) for p in prefix if p == first or p == last]
    for p in prefix:
        if placed >= n:
            break
        if p != first and p != last:
            chosen.append(int(p))
            placed += int(caps.middle[p])
    in_order = [int(p) for p in prefix if int(p) in set(chosen)]
    return Selection(tuple(in_order), first, last)


def _minimal(caps: Capacities, prefix: np.ndarray, num_layers: int) -> np.ndarray:
    """`prefix` without the peers it can do without, trying the least preferred first.

    The shortest prefix can still hold a peer that the rest make redundant (a small green peer
    ahead of one that holds everything alone): the plan then uses one peer fewer.
    """
    kept = prefix
    for peer in prefix[::-1]:
        if len(kept) == 1:
            break
        trial = kept[kept != peer]
        if _fits(caps, trial, num_layers):
            kept = trial
    return kept


def shortfall(footprint: ModelFootprint, caps: Capacities, candidates: np.ndarray) -> Shortfall:
    """Facts for an infeasible swarm.

    shortfall_layers: layers left unplaced by the best arrangement of every peer (all layers when
    no arrangement with both ends exists; a one-layer model needs one peer for everything). shortfall_gb: the least free VRAM one more peer would
    need to make the swarm feasible, over its possible roles (alone, first, last, middle).
    """
    n = footprint.num_layers
    two = best_two_ended(caps, candidates) if n >= 2 else None
    best_single = int(caps.single[candidates].max()) if len(candidates) else 0
    placed = max(two[0] if two else 0, best_single)
    needed_bytes = [footprint.stage_bytes(n, first=True, last=True)]
    if len(candidates) and n >= 2:
        loss_first, loss_last = _losses(caps, candidates)
        total_middle = int(caps.middle[candidates].sum())
        if np.isfinite(loss_last.min()):      # a newcomer as first stage, the best last kept
            rest = total_middle - int(loss_last.min())
            needed_bytes.append(footprint.stage_bytes(max(1, n - rest), first=True, last=False))
        if np.isfinite(loss_first.min()):     # a newcomer as last stage
            rest = total_middle - int(loss_first.min())
            needed_bytes.append(footprint.stage_bytes(max(1, n - rest), first=False, last=True))
    if two is not None:                       # a newcomer in the middle
        needed_bytes.append(footprint.stage_bytes(max(1, n - two[0]), first=False, last=False))
    free_gb = min(needed_bytes) / (1.0 - footprint.safety_margin) / GB
    return Shortfall(math.ceil(free_gb * 1000) / 1000, max(1, n - placed))
