"""Exact mode: the placement as a mixed-integer programme, and the greedy plan's certificate.

Steps: the greedy plan to targets (to_targets) -> every one-peer plan, in closed form -> the
MILP over plans of two or more stages -> the better of the two -> certificate {objective (the
greedy's J), optimum (the exact plan's J), bound (proven lower bound on J), gap}.

MILP over the allowed peers p that hold at least one layer, node 0 the ingress:
    x_ij ∈ {0,1}  tour arc i -> j (ingress -> first stage -> ... -> last stage -> ingress)
    y_p  ∈ {0,1}  p is a stage;  n_p ∈ Z, layers on p;  t_p >= 0 stage seconds;  f_ij >= 0 flow
    Σ_j x_0j = Σ_i x_i0 = 1;  Σ_j x_pj = Σ_i x_ip = y_p                    (one closed tour)
    Σ_j f_0j = Σ_p y_p;  Σ_i f_ip − Σ_j f_pj = y_p                        (single-commodity flow:
    x_ij <= f_ij <= K · x_ij (K − 1 off the ingress, 0 into it)   no sub-tour without the ingress;
    x_ij + x_ji <= 1                                                Gavish & Graves 1978)
    y_p <= n_p <= mid_p · y_p − (mid_p − first_p) · x_0p − (mid_p − last_p) · x_p0
                                        (whole layers; embeddings on the first, norm + head on the last)
    Σ_p n_p = num_layers;  2 <= Σ_p y_p <= K = min(max_peers, num_layers, peers)
    t_p >= compute_s_per_layer_p · n_p + compute_s_head_p · x_p0,  same for memory   (roofline)
    ms = Σ ms_ij · x_ij + 1000 · Σ t_p;   g = 1000 · Σ g_co2_per_s_p · t_p
    ms <= max_ms_per_token;  g <= max_g_co2_per_1k
    minimise J = per_g · g + per_ms · ms + per_peer · Σ y_p          (engine.planning.objective)
Stage time is a max of two lines and J only grows with it, so t_p equals the roofline time at
the optimum: the MILP's J is the plan metrics' J. One-peer plans are scored directly (first and
last at once breaks the linear capacity formula) and compared with the MILP's best.

Solver: HiGHS through scipy.optimize.milp. HiGHS is the strongest open-source MILP solver in
public benchmarks (Mittelmann), MIT-licensed, ships inside scipy (already a dependency: no new
native package), reports the best bound and gap at its time limit, and runs on every platform
the app runs on. OR-Tools would add a 30 MB wheel for CP-SAT, which prefers integer objectives.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix

from engine.errors import InvalidInput
from engine.geo import pairwise_km
from engine.model.footprint import ModelFootprint
from engine.plan import Plan
from engine.planning.assignment import ranges_of
from engine.planning.latency import one_way_ms
from engine.planning.planner import plan_from_stages, plan_header
from engine.planning.targets import Targets, meets
from engine.planning.to_targets import (
    TargetInputs,
    as_infeasible,
    baseline_plan,
    binding_from,
    greedy_plan,
    prepare_targets,
    with_targets,
)
from engine.planning.types import Ingress, Peer, Policy, Weights
from engine.validate import finite_number

DEFAULT_TIME_LIMIT_S = 10.0
MAX_EXACT_PEERS = 200
"""Arcs grow with the square of the peers: 200 allowed peers is ~40,000 tour arcs, beyond which
HiGHS rarely closes the gap within seconds. Larger swarms get a clear error, not a silent wait."""


@dataclass(frozen=True)
class ExactResult:
    plan: Plan | None        # best plan found (None: no plan meets the targets)
    value: float | None      # its objective
    bound: float             # proven lower bound on the objective (inf: proven infeasible)
    proven_optimal: bool


def plan_both_exact(footprint: ModelFootprint, peers: tuple[Peer, ...], ingress: Ingress,
                    weights: Weights, targets: Targets,
                    time_limit_s: float = DEFAULT_TIME_LIMIT_S) -> tuple[Plan, Plan]:
    """(VRAM baseline, exact carbon plan with its certificate against the greedy plan)."""
    time_limit_s = finite_number(time_limit_s, "time_limit_s", minimum=0.0, above_minimum=True)
    ti = prepare_targets(footprint, peers, ingress, weights, targets)
    baseline, greedy = baseline_plan(ti), greedy_plan(ti)
    if ti.objective is None:          # the allowed peers cannot hold the model at all
        return baseline, greedy
    if len(ti.inputs.peers) > MAX_EXACT_PEERS:
        raise InvalidInput("exact", len(ti.inputs.peers),
                           f"exact mode handles up to {MAX_EXACT_PEERS} allowed peers")
    result = solve(ti, "objective", ti.targets, time_limit_s)
    greedy_value = ti.objective.value(greedy.metrics) if greedy.feasible else None
    plan, value = result.plan, result.value
    if greedy_value is not None and (value is None or greedy_value < value):
        plan, value = greedy, greedy_value        # a time-limited incumbent can lose to the greedy
    if plan is None:
        return baseline, _exact_binding(ti, greedy, time_limit_s)
    bound = min(result.bound, value)
    gap = None if greedy_value is None else max(0.0, greedy_value - bound) / bound if bound > 0 else 0.0
    # The bound can reach the best value found even when the search stopped at its time limit.
    proven = result.proven_optimal or value <= bound * (1 + 1e-6)
    certificate = {"objective": greedy_value, "optimum": value, "bound": bound, "gap": gap,
                   "proven_optimal": proven, "solver": "HiGHS (scipy.optimize.milp)",
                   "time_limit_s": time_limit_s, **ti.objective.to_dict()}
    exact = replace(with_targets(plan, ti.targets), policy=Policy.CARBON.value,
                    certificate=certificate)
    return baseline, exact


def _exact_binding(ti: TargetInputs, greedy: Plan, time_limit_s: float) -> Plan:
    """No plan meets the targets: the best values reachable, each from its own MILP ("reachable"
    when every one is proven optimal, else "found": a time limit cut a search short)."""
    t = ti.targets
    free = replace(t, max_ms_per_token=None, max_g_co2_per_1k=None)
    proofs: list[bool] = []

    def best(goal: str, targets: Targets) -> float | None:
        found = solve(ti, goal, targets, time_limit_s)
        proofs.append(found.proven_optimal)
        if found.plan is None:
            return None
        m = found.plan.metrics
        return {"peers": m.peers_used, "ms": m.est_ms_per_token, "g": m.g_co2_per_1k_tokens}[goal]

    values = dict(fewest=best("peers", replace(free, max_peers=None)), fastest=best("ms", free),
                  cleanest=best("g", free),
                  cleanest_fast=best("g", replace(free, max_ms_per_token=t.max_ms_per_token)))
    return as_infeasible(greedy, binding_from(ti, **values, exact=all(proofs)))


def solve(ti: TargetInputs, goal: str, targets: Targets, time_limit_s: float) -> ExactResult:
    """The best plan for `goal` ("objective" J, "ms", "g" or "peers") meeting `targets`."""
    single = _best_single(ti, goal, targets)
    multi = _solve_milp(ti, goal, targets, time_limit_s)
    candidates = [r for r in (single, multi) if r.plan is not None]
    bound = min(single.bound, multi.bound)
    if not candidates:
        return ExactResult(None, None, bound, multi.proven_optimal)
    found = min(candidates, key=lambda r: r.value)
    return ExactResult(found.plan, found.value, min(bound, found.value),
                       multi.proven_optimal or found.value <= multi.bound)


def _goal_value(ti: TargetInputs, goal: str, plan: Plan) -> float:
    m = plan.metrics
    if goal == "objective":
        return ti.objective.value(m)
    return {"peers": m.peers_used, "ms": m.est_ms_per_token, "g": m.g_co2_per_1k_tokens}[goal]


def _best_single(ti: TargetInputs, goal: str, targets: Targets) -> ExactResult:
    """Every one-peer plan in closed form (vectorised), the best one built as a Plan."""
    inputs, n = ti.inputs, ti.inputs.footprint.num_layers
    able = np.flatnonzero(inputs.caps.single >= n)
    if len(able) == 0:
        return ExactResult(None, None, np.inf, True)
    seconds = ti.rates.seconds(able, np.full(len(able), n), np.ones(len(able)))
    ms = 2.0 * inputs.columns.ingress_ms[able] + 1000.0 * seconds
    g = 1000.0 * ti.rates.g_co2_per_s[able] * seconds
    ok = np.ones(len(able), dtype=bool)
    if targets.max_ms_per_token is not None:
        ok &= ms <= targets.max_ms_per_token
    if targets.max_g_co2_per_1k is not None:
        ok &= g <= targets.max_g_co2_per_1k
    if not ok.any():
        return ExactResult(None, None, np.inf, True)
    o = ti.objective
    score = {"objective": o.per_g_co2_per_1k * g + o.per_ms_per_token * ms + o.per_peer,
             "ms": ms, "g": g, "peers": np.ones(len(able))}[goal]
    pick = int(able[np.flatnonzero(ok)[np.argmin(score[ok])]])
    plan = plan_from_stages(inputs, plan_header(inputs, Policy.CARBON, ti.weights), [pick], [(0, n)])
    value = _goal_value(ti, goal, plan)
    return ExactResult(plan, value, value, True)


def _solve_milp(ti: TargetInputs, goal: str, targets: Targets, time_limit_s: float) -> ExactResult:
    inputs, caps = ti.inputs, ti.inputs.caps
    n = inputs.footprint.num_layers
    peers = np.flatnonzero(caps.middle >= 1)           # node v = 1..m is peers[v - 1]
    m = len(peers)
    stages_cap = min(m, n, targets.max_peers or m)
    if stages_cap < 2:
        return ExactResult(None, None, np.inf, True)
    mid = caps.middle[peers].astype(np.float64)
    first = caps.first[peers].astype(np.float64)
    last = caps.last[peers].astype(np.float64)
    cols = inputs.columns

    # Arcs: every ordered pair of nodes, except into a first stage that cannot hold the
    # embeddings or out of a last stage that cannot hold the head.
    src, dst = np.meshgrid(np.arange(m + 1), np.arange(m + 1), indexing="ij")
    src, dst = src.ravel(), dst.ravel()
    keep = src != dst
    keep &= ~((src == 0) & (first[np.maximum(dst - 1, 0)] < 1))
    keep &= ~((dst == 0) & (last[np.maximum(src - 1, 0)] < 1))
    src, dst = src[keep], dst[keep]
    km = pairwise_km(np.concatenate([[inputs.ingress.lat], cols.lat[peers]]),
                     np.concatenate([[inputs.ingress.lon], cols.lon[peers]]))
    arc_ms = one_way_ms(km[src, dst])
    to_ingress = cols.ingress_ms[peers]                 # measured RTT/2 wins on ingress legs
    arc_ms = np.where(src == 0, to_ingress[np.maximum(dst - 1, 0)], arc_ms)
    arc_ms = np.where(dst == 0, to_ingress[np.maximum(src - 1, 0)], arc_ms)

    a = len(src)
    X, F, Y, N, T = 0, a, 2 * a, 2 * a + m, 2 * a + 2 * m       # variable block offsets
    size = 2 * a + 3 * m
    builder = _Rows()

    builder.add(X + np.flatnonzero(src == 0), 1.0, 1, 1)                 # leave the ingress once
    builder.add(X + np.flatnonzero(dst == 0), 1.0, 1, 1)                 # come back once
    for v in range(1, m + 1):
        y = Y + v - 1
        builder.add(np.append(X + np.flatnonzero(src == v), y), [1.0] * int((src == v).sum()) + [-1.0], 0, 0)
        builder.add(np.append(X + np.flatnonzero(dst == v), y), [1.0] * int((dst == v).sum()) + [-1.0], 0, 0)
        builder.add(np.concatenate([F + np.flatnonzero(dst == v), F + np.flatnonzero(src == v), [y]]),
                    [1.0] * int((dst == v).sum()) + [-1.0] * int((src == v).sum()) + [-1.0], 0, 0)
    builder.add(np.append(F + np.flatnonzero(src == 0), Y + np.arange(m)),
                [1.0] * int((src == 0).sum()) + [-1.0] * m, 0, 0)
    arcs = np.arange(a)
    out_cap = np.where(src == 0, float(stages_cap), float(stages_cap - 1))
    builder.add_each(np.stack([F + arcs, X + arcs], axis=1), np.stack([np.ones(a), -out_cap], axis=1),
                     -np.inf, 0)                                          # flow only on used arcs
    inner = arcs[dst != 0]                                                # ... at least 1 on them
    builder.add_each(np.stack([F + inner, X + inner], axis=1), [1.0, -1.0], 0, np.inf)
    # No 2-cycles: an arc and its reverse never both (between peers: a sub-tour; through the
    # ingress: a one-stage tour, which the MILP excludes). Redundant for integers, and it
    # tightens the LP relaxation a lot.
    arc_of = {(int(i), int(j)): k for k, (i, j) in enumerate(zip(src, dst, strict=True))}
    pairs = [(k, arc_of[(j, i)]) for (i, j), k in arc_of.items() if i < j and (j, i) in arc_of]
    if pairs:
        builder.add_each(X + np.array(pairs), [1.0, 1.0], -np.inf, 1)
    out_of_ingress = {int(d) - 1: i for i, d in enumerate(dst) if src[i] == 0}
    into_ingress = {int(s) - 1: i for i, s in enumerate(src) if dst[i] == 0}
    r = ti.rates
    for p in range(m):
        q = int(peers[p])
        c = [N + p, Y + p]
        v = [1.0, -mid[p]]
        if p in out_of_ingress:
            c.append(X + out_of_ingress[p])
            v.append(mid[p] - first[p])
        if p in into_ingress:
            c.append(X + into_ingress[p])
            v.append(mid[p] - last[p])
        builder.add(c, v, -np.inf, 0)                                     # capacity by role
        builder.add([N + p, Y + p], [1.0, -1.0], 0, np.inf)               # a stage holds a layer
        for per_layer, head in ((r.compute_s_per_layer[q], r.compute_s_head[q]),
                                (r.memory_s_per_layer[q], r.memory_s_head[q])):
            c, v = [N + p, T + p], [per_layer, -1.0]
            if p in into_ingress:
                c.append(X + into_ingress[p])
                v.append(head)
            builder.add(c, v, -np.inf, 0)                                 # roofline stage time
    builder.add(N + np.arange(m), 1.0, n, n)                             # every layer once
    builder.add(Y + np.arange(m), 1.0, 2, stages_cap)
    ms_cols = np.concatenate([X + np.arange(a), T + np.arange(m)])
    ms_vals = np.concatenate([arc_ms, np.full(m, 1000.0)])
    g_vals = 1000.0 * r.g_co2_per_s[peers]
    if targets.max_ms_per_token is not None:
        builder.add(ms_cols, ms_vals, -np.inf, targets.max_ms_per_token)
    if targets.max_g_co2_per_1k is not None:
        builder.add(T + np.arange(m), g_vals, -np.inf, targets.max_g_co2_per_1k)

    cost = np.zeros(size)
    o = ti.objective
    if goal == "objective":
        cost[X:X + a] = o.per_ms_per_token * arc_ms
        cost[T:T + m] = 1000.0 * (o.per_g_co2_per_1k * r.g_co2_per_s[peers] + o.per_ms_per_token)
        cost[Y:Y + m] = o.per_peer
    elif goal == "ms":
        cost[ms_cols] = ms_vals
    elif goal == "g":
        cost[T:T + m] = g_vals
    else:
        cost[Y:Y + m] = 1.0

    lower = np.zeros(size)
    upper = np.concatenate([np.ones(a), np.where(dst == 0, 0.0, stages_cap), np.ones(m), mid,
                            np.full(m, np.inf)])
    integrality = np.concatenate([np.ones(a), np.zeros(a), np.ones(2 * m), np.zeros(m)])
    res = milp(cost, constraints=builder.constraint(size), integrality=integrality,
               bounds=Bounds(lower, upper),
               options={"time_limit": float(time_limit_s), "mip_rel_gap": 1e-6, "disp": False})
    bound = res.mip_dual_bound if res.mip_dual_bound is not None else -np.inf
    if res.status == 2:                                   # proven infeasible
        return ExactResult(None, None, np.inf, True)
    if res.x is None:
        return ExactResult(None, None, float(bound) if np.isfinite(bound) else 0.0, False)
    xs = res.x
    nxt = {int(src[i]): int(dst[i]) for i in range(a) if xs[X + i] > 0.5}
    order, node = [], nxt[0]
    while node != 0:
        order.append(node - 1)
        node = nxt[node]
    stage_peers = [int(peers[p]) for p in order]
    counts = [int(round(xs[N + p])) for p in order]
    plan = plan_from_stages(inputs, plan_header(inputs, Policy.CARBON, ti.weights),
                            stage_peers, ranges_of(counts))
    if not meets(plan.metrics, _loosened(targets)):
        raise AssertionError(f"exact planner bug: {plan.metrics} misses {targets}")
    value = _goal_value(ti, goal, plan)
    proven = res.status == 0
    return ExactResult(plan, value, value if proven else min(float(bound), value), proven)


def _loosened(targets: Targets) -> Targets:
    """Targets with the solver's feasibility tolerance (1e-6 relative) added."""
    grow = lambda v: None if v is None else v * (1 + 1e-6) + 1e-9   # noqa: E731
    return replace(targets, max_ms_per_token=grow(targets.max_ms_per_token),
                   max_g_co2_per_1k=grow(targets.max_g_co2_per_1k))


class _Rows:
    """Sparse constraint rows collected one by one, turned into one LinearConstraint."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []
        self.lo: list[float] = []
        self.hi: list[float] = []

    def add(self, cols, vals, lo: float, hi: float) -> None:
        cols = np.asarray(cols, dtype=np.int64)
        vals = np.broadcast_to(np.asarray(vals, dtype=np.float64), cols.shape)
        self.rows.append(np.full(len(cols), len(self.lo)))
        self.cols.append(cols)
        self.vals.append(vals)
        self.lo.append(lo)
        self.hi.append(hi)

    def add_each(self, cols: np.ndarray, vals, lo: float, hi: float) -> None:
        """One row per line of `cols` (rows × k) with `vals` (k, or rows × k), the same bounds."""
        count, k = cols.shape
        first = len(self.lo)
        self.rows.append(np.repeat(np.arange(first, first + count), k))
        self.cols.append(cols.ravel())
        vals = np.asarray(vals, dtype=np.float64)
        self.vals.append(vals.ravel() if vals.ndim == 2 else np.tile(vals, count))
        self.lo.extend([lo] * count)
        self.hi.extend([hi] * count)

    def constraint(self, size: int) -> LinearConstraint:
        matrix = coo_matrix((np.concatenate(self.vals),
                             (np.concatenate(self.rows), np.concatenate(self.cols))),
                            shape=(len(self.lo), size)).tocsr()
        return LinearConstraint(matrix, np.array(self.lo), np.array(self.hi))
