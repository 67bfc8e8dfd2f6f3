"""Carbon vs speed trade-offs: carbon-policy plans over a grid of weights, non-dominated only."""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import InvalidInput
from engine.model.footprint import ModelFootprint
from engine.plan import Plan
from engine.planning.planner import plan_prepared, prepare
from engine.planning.types import Ingress, Peer, Policy, Weights


@dataclass(frozen=True)
class ParetoPoint:
    weights: Weights
    plan: Plan


def weight_grid(steps: int) -> list[Weights]:
    """Every (carbon, distance, vram) = (i, j, steps − i − j) / steps on the simplex."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InvalidInput("steps", steps, "expected an integer >= 1")
    return [Weights(i / steps, j / steps, (steps - i - j) / steps)
            for i in range(steps, -1, -1) for j in range(steps - i, -1, -1)]


def _dominates(a: Plan, b: Plan) -> bool:
    ma, mb = a.metrics, b.metrics
    no_worse = (ma.g_co2_per_1k_tokens <= mb.g_co2_per_1k_tokens
                and ma.est_ms_per_token <= mb.est_ms_per_token)
    better = (ma.g_co2_per_1k_tokens < mb.g_co2_per_1k_tokens
              or ma.est_ms_per_token < mb.est_ms_per_token)
    return no_worse and better


def pareto_sweep(footprint: ModelFootprint, peers: tuple[Peer, ...], ingress: Ingress,
                 steps: int = 6) -> list[ParetoPoint]:
    """Feasible carbon-policy plans over weight_grid(steps) not dominated on
    (g_co2_per_1k_tokens, est_ms_per_token), sorted by ms/token; plans with the same stages
    collapse into the first weights that produced them. Empty when nothing is feasible."""
    inputs = prepare(footprint, peers, ingress)
    seen: dict[tuple, ParetoPoint] = {}
    for weights in weight_grid(steps):
        plan = plan_prepared(inputs, Policy.CARBON, weights.normalised())
        if not plan.feasible:
            continue
        key = tuple((s.peer_id, s.layer_start, s.layer_end) for s in plan.stages)
        seen.setdefault(key, ParetoPoint(weights, plan))
    points = list(seen.values())
    front = [p for p in points if not any(_dominates(q.plan, p.plan) for q in points)]
    front.sort(key=lambda p: (p.plan.metrics.est_ms_per_token,
                              p.plan.metrics.g_co2_per_1k_tokens))
    return front
