"""Plan to targets: the VRAM baseline and the carbon plan under the user's targets and placement.

Steps: validate the targets -> keep the allowed peers (countries, exclusions) -> VRAM baseline
over them (max_peers applies) -> the objective J, scaled by that baseline (engine.planning.
objective) -> candidate greedy plans -> the candidate with the lowest J that meets every target,
improved by local search (engine.planning.improve) -> else the binding constraint (`binding_of`).

Candidates: the carbon policy's peer order at the user's weights and at every point of a
7-step weight grid (28 weights), plus the VRAM order; each gives the smallest feasible set
(selection), the fastest closed tour (ordering; ingress legs at their measured RTT/2 where known),
walked both ways, and two layer splits along it: the one with the lowest J and the fastest one
(engine.planning.assignment.cheapest_layer_counts). Plans with the same stages are built once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from engine.model.footprint import ModelFootprint
from engine.plan import Plan
from engine.planning.assignment import cheapest_layer_counts, fits, ranges_of, stage_capacities
from engine.planning.improve import improve, move_pool, selection_of
from engine.planning.inputs import check_weights
from engine.planning.objective import (
    Objective,
    StageRates,
    cost_per_stage_second,
    objective_from_baseline,
    stage_rates,
)
from engine.planning.pareto import weight_grid
from engine.planning.planner import (
    PlanningInputs,
    plan_from_stages,
    plan_header,
    plan_prepared,
    prepare,
    stage_tour,
)
from engine.planning.scoring import policy_order
from engine.planning.selection import Selection, select_peers
from engine.planning.targets import Binding, Targets, allowed_mask, check_targets, meets, placement_words
from engine.planning.types import Ingress, Peer, Policy, Weights

GRID_STEPS = 6


@dataclass(frozen=True, eq=False)
class TargetInputs:
    """Validated targets, the allowed peers prepared for planning, and the objective J."""

    targets: Targets
    weights: Weights                 # normalised
    inputs: PlanningInputs           # over the allowed peers only
    baseline: Plan                   # VRAM policy over the allowed peers, max_peers not applied
    objective: Objective | None      # None when the allowed peers cannot hold the model
    rates: StageRates


def prepare_targets(footprint: ModelFootprint, peers: tuple[Peer, ...], ingress: Ingress,
                    weights: Weights, targets: Targets) -> TargetInputs:
    normalised = check_weights(weights)
    targets = check_targets(targets, tuple(peers))
    if targets.restricts_placement:
        mask = allowed_mask(tuple(peers), targets)
        peers = tuple(p for p, ok in zip(peers, mask, strict=True) if ok)
    inputs = prepare(footprint, tuple(peers), ingress)
    baseline = plan_prepared(inputs, Policy.VRAM, normalised)
    objective = objective_from_baseline(normalised, baseline.metrics) if baseline.feasible else None
    rates = stage_rates(footprint, inputs.gpus, inputs.columns.carbon_g_per_kwh)
    return TargetInputs(targets, normalised, inputs, baseline, objective, rates)


def plan_both_to_targets(footprint: ModelFootprint, peers: tuple[Peer, ...], ingress: Ingress,
                         weights: Weights, targets: Targets) -> tuple[Plan, Plan]:
    """(VRAM baseline, carbon plan) honouring `targets`; infeasible plans name what binds."""
    ti = prepare_targets(footprint, peers, ingress, weights, targets)
    return baseline_plan(ti), greedy_plan(ti)


def baseline_plan(ti: TargetInputs) -> Plan:
    """The VRAM baseline under the placement constraints (it ignores the metric targets)."""
    plan = with_targets(ti.baseline, ti.targets)
    if not plan.feasible:
        return with_binding(plan, placement_binding(ti, plan))
    peers_cap = ti.targets.max_peers
    if peers_cap is not None and plan.metrics.peers_used > peers_cap:
        return as_infeasible(plan, peers_binding(ti, plan.metrics.peers_used, exact=False))
    return plan


def greedy_plan(ti: TargetInputs) -> Plan:
    """The carbon plan: the candidate with the lowest J among those meeting every target,
    improved by local search (engine.planning.improve)."""
    header = plan_header(ti.inputs, Policy.CARBON, ti.weights)
    if ti.objective is None:
        infeasible = Plan(**header, feasible=False, shortfall_gb=ti.baseline.shortfall_gb,
                          shortfall_layers=ti.baseline.shortfall_layers)
        infeasible = with_targets(infeasible, ti.targets)
        return with_binding(infeasible, placement_binding(ti, infeasible))
    candidates = candidate_plans(ti)
    good = [p for p in candidates if meets(p.metrics, ti.targets)]
    if not good:
        return as_infeasible(with_targets(Plan(**header, feasible=False), ti.targets),
                           binding_of(ti, candidates, exact=False))
    best = min(good, key=lambda p: ti.objective.value(p.metrics))
    best = _local_search(ti, best)
    return with_targets(best, ti.targets)


def _local_search(ti: TargetInputs, plan: Plan) -> Plan:
    inputs = ti.inputs
    index = {p.id: i for i, p in enumerate(inputs.peers)}
    stage_ids = [index[s.peer_id] for s in plan.stages]
    cost_per_s = cost_per_stage_second(ti.objective, ti.rates)
    one_layer = ti.rates.seconds(np.arange(len(inputs.peers)), np.ones(len(inputs.peers)),
                                 np.zeros(len(inputs.peers)))
    pool = move_pool(cost_per_s * one_layer, inputs.columns.ingress_ms, inputs.caps.middle, stage_ids)

    def plan_set(peers: tuple[int, ...]) -> Plan | None:
        chosen = selection_of(inputs.caps, peers, inputs.footprint.num_layers)
        if chosen is None:
            return None
        good = [p for p in plans_for_selection(ti, chosen) if meets(p.metrics, ti.targets)]
        return min(good, key=lambda p: ti.objective.value(p.metrics)) if good else None

    return improve(plan, stage_ids, plan_set, lambda p: ti.objective.value(p.metrics), pool)


def candidate_plans(ti: TargetInputs) -> list[Plan]:
    inputs = ti.inputs
    orders = [policy_order(Policy.CARBON, inputs.columns, w, inputs.g_co2_per_layer_token)
              for w in [ti.weights] + [g.normalised() for g in weight_grid(GRID_STEPS)]]
    orders.append(policy_order(Policy.VRAM, inputs.columns, ti.weights, inputs.g_co2_per_layer_token))
    plans: dict[tuple, Plan] = {}
    seen_sets: set[tuple[int, ...]] = set()
    for order in orders:
        chosen = select_peers(inputs.footprint, inputs.caps, order)
        if not isinstance(chosen, Selection) or tuple(sorted(chosen.peers)) in seen_sets:
            continue
        seen_sets.add(tuple(sorted(chosen.peers)))
        for plan in plans_for_selection(ti, chosen):
            plans.setdefault(tuple((s.peer_id, s.layer_end) for s in plan.stages), plan)
    return list(plans.values())


def plans_for_selection(ti: TargetInputs, chosen: Selection) -> list[Plan]:
    """The selection on its shortest closed tour with two layer splits: lowest J, fastest."""
    header = plan_header(ti.inputs, Policy.CARBON, ti.weights)
    stage_peers, leg_km = stage_tour(ti.inputs, chosen, by_latency=True)
    cost_per_s = cost_per_stage_second(ti.objective, ti.rates)
    tours = [(stage_peers, leg_km)]
    backwards = stage_peers[::-1]        # the same legs; the head on the other end of the ring
    if len(stage_peers) > 1 and fits(ti.inputs.caps, backwards, ti.inputs.footprint.num_layers):
        tours.append((backwards, leg_km[::-1]))
    out = []
    for peers, km in tours:
        for per_s in (cost_per_s, np.ones_like(cost_per_s)):
            counts = split_layers(ti, peers, per_s)
            out.append(plan_from_stages(ti.inputs, header, peers, ranges_of(counts), km))
    return out


def split_layers(ti: TargetInputs, stage_peers: list[int], cost_per_s: np.ndarray) -> list[int]:
    """Layer counts along the tour minimising Σ cost_per_s · stage seconds."""
    peers = np.asarray(stage_peers, dtype=np.int64)
    last = np.zeros(len(peers))
    last[-1] = 1.0

    def cost(counts: np.ndarray) -> np.ndarray:
        return cost_per_s[peers] * ti.rates.seconds(peers, counts, last)

    return cheapest_layer_counts(ti.inputs.footprint.num_layers,
                                 stage_capacities(ti.inputs.caps, stage_peers), cost)


# ---- when no plan meets the targets -------------------------------------------------------

def placement_binding(ti: TargetInputs, plan: Plan) -> Binding:
    where = placement_words(ti.targets)
    return Binding("placement", None, None,
                   f"the swarm{where} cannot hold {plan.model.name}: short by "
                   f"{plan.shortfall_gb:.2f} GB and {plan.shortfall_layers} layer(s)")


def peers_binding(ti: TargetInputs, fewest: int, *, exact: bool) -> Binding:
    verb = "reachable" if exact else "found"
    return Binding("max_peers", ti.targets.max_peers, fewest,
                   f"the fewest peers {verb}{placement_words(ti.targets)} is {fewest}, "
                   f"above the {ti.targets.max_peers} asked")


def metric_binding(ti: TargetInputs, name: str, reachable: float, *, exact: bool,
                   given: str = "") -> Binding:
    verb = "reachable" if exact else "found"
    asked = getattr(ti.targets, name)
    label = {"max_ms_per_token": "ms/token", "max_g_co2_per_1k": "gCO2/1k tokens"}[name]
    shown = f"{reachable:.1f}" if name == "max_ms_per_token" else f"{reachable:.3g}"
    return Binding(name, asked, reachable,
                   f"the lowest {label} {verb}{placement_words(ti.targets)}{given} is {shown}, "
                   f"above the {asked:g} asked")


def binding_of(ti: TargetInputs, candidates: list[Plan], *, exact: bool) -> Binding:
    """Which target binds, judged on `candidates` (feasible plans over the allowed peers)."""
    t = ti.targets
    fewest = min(p.metrics.peers_used for p in candidates)
    within = [p for p in candidates if t.max_peers is None or p.metrics.peers_used <= t.max_peers]
    fast = [p for p in within
            if t.max_ms_per_token is None or p.metrics.est_ms_per_token <= t.max_ms_per_token]
    return binding_from(
        ti, fewest=fewest,
        fastest=min((p.metrics.est_ms_per_token for p in within), default=None),
        cleanest=min((p.metrics.g_co2_per_1k_tokens for p in within), default=None),
        cleanest_fast=min((p.metrics.g_co2_per_1k_tokens for p in fast), default=None),
        exact=exact)


def binding_from(ti: TargetInputs, *, fewest: int | None, fastest: float | None,
                 cleanest: float | None, cleanest_fast: float | None, exact: bool) -> Binding:
    """The binding constraint from the best values reachable (or found): the fewest peers, then
    the lowest ms/token and gCO2/1k within max_peers, then the lowest gCO2/1k within both."""
    t = ti.targets
    if fewest is not None and t.max_peers is not None and fewest > t.max_peers:
        return peers_binding(ti, fewest, exact=exact)
    if fastest is not None and t.max_ms_per_token is not None and fastest > t.max_ms_per_token:
        return metric_binding(ti, "max_ms_per_token", fastest, exact=exact)
    if cleanest is not None and t.max_g_co2_per_1k is not None and cleanest > t.max_g_co2_per_1k:
        return metric_binding(ti, "max_g_co2_per_1k", cleanest, exact=exact)
    if cleanest_fast is not None and t.max_ms_per_token is not None and t.max_g_co2_per_1k is not None:
        return metric_binding(ti, "max_g_co2_per_1k", cleanest_fast, exact=exact,
                              given=f" at <= {t.max_ms_per_token:g} ms/token")
    # A search cut short by its time limit found no plan, and none proved what binds.
    return Binding("time_limit", None, None,
                   "no plan meeting the targets was found within the time limit, and none was "
                   "proven impossible: raise the time limit or loosen a target")


def with_targets(plan: Plan, targets: Targets) -> Plan:
    return replace(plan, targets=targets.to_dict())


def with_binding(plan: Plan, binding: Binding) -> Plan:
    return replace(plan, binding=binding.to_dict())


def as_infeasible(plan: Plan, binding: Binding) -> Plan:
    """`plan` as infeasible because of `binding` (no stages, no shortfall in GB: VRAM suffices)."""
    return replace(plan, feasible=False, stages=(), metrics=None, shortfall_gb=None,
                   shortfall_layers=None, binding=binding.to_dict())
