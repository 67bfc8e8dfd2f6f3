"""Local search on a plan to targets: add, drop or swap one peer while the objective J falls.

The greedy candidates (to_targets) are prefixes of one peer order, as small as the model allows;
the best plan often adds a clean or fast peer to take layers off a dirty or slow one, or swaps
one. Each move re-plans the new set exactly as a candidate is planned (shortest closed tour,
cheapest layer split) and is kept when J falls and every target still holds; the search stops
when no move helps, after MAX_ROUNDS or after MAX_PLANS re-planned sets. Moves only use a pool of promising peers: the current
stages, the cheapest per layer, the nearest to the ingress and the largest.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.plan import Plan
from engine.planning.selection import Selection, best_two_ended

MAX_ROUNDS = 8
MAX_PLANS = 400
"""Re-planned sets per search, at most: a 40-stage plan has ~800 swaps per round, each a tour."""
POOL_CHEAPEST, POOL_NEAREST, POOL_LARGEST = 10, 5, 4


def improve(plan: Plan, stage_ids: list[int], plan_set: Callable[[tuple[int, ...]], Plan | None],
            value: Callable[[Plan], float], pool: np.ndarray) -> Plan:
    """The best plan reachable from `plan` (stages `stage_ids`) by single-peer moves within `pool`.

    `plan_set(peers)` plans a set of peer indices (None when it cannot hold the model or misses a
    target); `value(plan)` is J.
    """
    current, best = tuple(stage_ids), value(plan)
    tried: set[tuple[int, ...]] = {tuple(sorted(current))}
    for _ in range(MAX_ROUNDS):
        if len(tried) > MAX_PLANS:
            break
        outside = [int(p) for p in pool if int(p) not in current]
        moves = ([current + (p,) for p in outside]
                 + [tuple(q for q in current if q != d) for d in current if len(current) > 1]
                 + [tuple(p if q == d else q for q in current) for d in current for p in outside])
        improved = False
        for peers in moves:
            key = tuple(sorted(peers))
            if key in tried or len(tried) > MAX_PLANS:
                continue
            tried.add(key)
            candidate = plan_set(peers)
            if candidate is not None and value(candidate) < best - 1e-12:
                plan, best, current, improved = candidate, value(candidate), peers, True
        if not improved:
            break
    return plan


def selection_of(caps, peers: tuple[int, ...], num_layers: int) -> Selection | None:
    """A Selection for a set of peers when some arrangement of all of them holds the model."""
    array = np.asarray(peers, dtype=np.int64)
    if len(array) == 1:
        p = int(array[0])
        return Selection((p,), p, p) if caps.single[p] >= num_layers else None
    if num_layers < len(array) or caps.middle[array].min() < 1:
        return None
    two = best_two_ended(caps, array)
    if two is None or two[0] < num_layers:
        return None
    return Selection(tuple(int(p) for p in array), two[1], two[2])


def move_pool(per_layer_cost: np.ndarray, ingress_ms: np.ndarray, middle: np.ndarray,
              current: list[int]) -> np.ndarray:
    """Peer indices worth trying: the current stages and the best few by each criterion."""
    usable = np.flatnonzero(middle >= 1)
    picks = [np.asarray(current, dtype=np.int64)]
    for key, count in ((per_layer_cost, POOL_CHEAPEST), (ingress_ms, POOL_NEAREST),
                       (-middle.astype(np.float64), POOL_LARGEST)):
        picks.append(usable[np.argsort(key[usable], kind="stable")[:count]])
    return np.unique(np.concatenate(picks))
