"""Contiguous layer ranges along the tour: stage i holds layers [start_i, end_i)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from engine.planning.selection import Capacities


def allocate_layers_proportionally(total_layers: int, capacities: Sequence[int]) -> list[int]:
    """Layer counts per stage: one each, the rest split in proportion to spare capacity.

    Largest-remainder (Hamilton) apportionment in exact integers, so no stage exceeds its
    capacity and the counts sum to `total_layers`. Ties go to the earlier stage.
    """
    if isinstance(total_layers, bool) or not isinstance(total_layers, int) or total_layers < 1:
        raise ValueError(f"total_layers={total_layers!r}: expected an integer >= 1")
    caps = list(capacities)
    if not caps:
        raise ValueError("capacities=[]: expected at least one stage")
    for i, cap in enumerate(caps):
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise ValueError(f"capacities[{i}]={cap!r}: expected an integer >= 1 "
                             "(every stage holds at least one layer)")
    if len(caps) > total_layers:
        raise ValueError(f"capacities has {len(caps)} stages for {total_layers} layers: "
                         "every stage needs at least one layer")
    if sum(caps) < total_layers:
        raise ValueError(f"capacities sum to {sum(caps)} < total_layers={total_layers}")
    spare = [c - 1 for c in caps]
    spare_total = sum(spare)
    remaining = total_layers - len(caps)
    if remaining == 0:
        return [1] * len(caps)
    quotas = [remaining * s for s in spare]
    counts = [1 + q // spare_total for q in quotas]
    leftover = total_layers - sum(counts)
    by_remainder = sorted(range(len(caps)), key=lambda i: (-(quotas[i] % spare_total), i))
    for i in by_remainder[:leftover]:
        counts[i] += 1
    return counts


def stage_capacities(caps: Capacities, stage_peers: Sequence[int]) -> list[int]:
    """Each stage's capacity in layers given its role along the tour (first, middle, last)."""
    k = len(stage_peers)
    return [caps.of_role(p, first=i == 0, last=i == k - 1) for i, p in enumerate(stage_peers)]


def fits(caps: Capacities, stage_peers: Sequence[int], num_layers: int) -> bool:
    """Can these stages, in this order, hold `num_layers` whole layers (each at least one)?"""
    per_stage = stage_capacities(caps, stage_peers)
    return min(per_stage) >= 1 and sum(per_stage) >= num_layers and len(per_stage) <= num_layers


def layer_ranges(caps: Capacities, stage_peers: Sequence[int],
                 num_layers: int) -> list[tuple[int, int]]:
    """[start, end) per stage, contiguous from 0 to num_layers, balanced by capacity."""
    counts = allocate_layers_proportionally(num_layers, stage_capacities(caps, stage_peers))
    ranges = []
    start = 0
    for count in counts:
        ranges.append((start, start + count))
        start += count
    return ranges


def cheapest_layer_counts(total_layers: int, capacities: Sequence[int],
                          stage_cost: Callable[[np.ndarray], np.ndarray]) -> list[int]:
    """Layer counts per stage (each >= 1, <= its capacity, summing to `total_layers`) that
    minimise Σ stage_cost(counts): one layer each, then every further layer where it adds least.

    `stage_cost(counts)` gives each stage's cost at those counts and must be convex in each
    count (a roofline stage time is: the max of two lines), which makes adding layers one at a
    time where they cost least exactly optimal (separable convex resource allocation, Gross 1956).
    """
    caps = np.asarray(list(capacities), dtype=np.int64)
    if len(caps) == 0 or caps.min() < 1 or caps.sum() < total_layers or len(caps) > total_layers:
        raise ValueError(f"capacities={caps.tolist()} cannot hold total_layers={total_layers} "
                         "with at least one layer per stage")
    counts = np.ones(len(caps), dtype=np.int64)
    for _ in range(total_layers - len(caps)):
        step = stage_cost(counts + 1) - stage_cost(counts)
        step[counts >= caps] = np.inf
        counts[int(np.argmin(step))] += 1
    return [int(c) for c in counts]


def ranges_of(counts: Sequence[int]) -> list[tuple[int, int]]:
    """[start, end) per stage for consecutive layer counts from layer 0."""
    ends = np.cumsum(counts)
    return [(int(e - c), int(e)) for c, e in zip(counts, ends, strict=True)]
