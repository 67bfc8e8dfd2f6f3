"""Carbon over time, pure: a plan's gCO2 per 1k tokens along a day, and the greenest window for a batch.

Inputs are values: peers, each peer's intensity series ((moment, gCO2/kWh) pairs, oldest first, from
history and forecast) and the moments to look at. A peer without a series keeps its current value
(flat), and every figure says whether any series covered it (`known`), so flat guesses are visible.
Steps of greenest_window: candidate starts every `step_h` → peers at the mean intensity over the run
→ carbon plan at each start → the start with the fewest grams → saving against starting now.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.errors import InvalidInput
from engine.model.footprint import ModelFootprint
from engine.plan import Plan
from engine.planning.planner import make_plan
from engine.planning.replacement import plan_g_per_1k_tokens
from engine.planning.types import Ingress, Peer, Policy, Weights

IntensitySeries = Sequence[tuple[datetime, float]]
SAMPLE_H = 0.25          # a run's mean intensity is sampled every 15 minutes


def intensity_at(series: IntensitySeries, at: datetime, fallback: float) -> tuple[float, bool]:
    """(value, known): the series' value in force at `at` (step function: the last point at or before
    it); before the first point the first value; no series at all -> (fallback, False)."""
    if not series:
        return fallback, False
    value = series[0][1]
    for moment, g in series:
        if moment > at:
            break
        value = g
    covered = series[0][0] <= at <= series[-1][0] + timedelta(hours=1)
    return value, covered


def peers_at(peers: Sequence[Peer], series_by_peer: Mapping[str, IntensitySeries], start: datetime,
             end: datetime | None = None) -> tuple[tuple[Peer, ...], bool]:
    """Peers with the mean intensity over [start, end] (or at `start`), and whether any series covered it."""
    moments = [start]
    if end is not None:
        steps = max(1, round((end - start) / timedelta(hours=SAMPLE_H)))
        moments = [start + (end - start) * i / steps for i in range(steps + 1)]
    out, known_any = [], False
    for peer in peers:
        values = [intensity_at(series_by_peer.get(peer.id, ()), m, peer.carbon_g_per_kwh) for m in moments]
        known_any = known_any or any(k for _, k in values)
        out.append(dataclasses.replace(peer, carbon_g_per_kwh=sum(v for v, _ in values) / len(values)))
    return tuple(out), known_any


@dataclass(frozen=True)
class TimelinePoint:
    at: datetime
    plan_g_per_1k_tokens: float
    cleanest_peer: str
    cleanest_g_per_kwh: float
    dirtiest_peer: str
    dirtiest_g_per_kwh: float
    known: bool                       # some series covered this moment (else all values held flat)


def plan_timeline(plan: Plan, footprint: ModelFootprint, peers: Sequence[Peer],
                  series_by_peer: Mapping[str, IntensitySeries], moments: Sequence[datetime]) -> tuple[TimelinePoint, ...]:
    """The running plan's gCO2/1k tokens and the swarm's cleanest / dirtiest peer at each moment."""
    if not plan.feasible or not peers:
        return ()
    points = []
    for at in moments:
        now_peers, known = peers_at(peers, series_by_peer, at)
        by_id = {p.id: p for p in now_peers}
        clean = min(now_peers, key=lambda p: p.carbon_g_per_kwh)
        dirty = max(now_peers, key=lambda p: p.carbon_g_per_kwh)
        points.append(TimelinePoint(at, plan_g_per_1k_tokens(plan, footprint, by_id), clean.id,
                                    clean.carbon_g_per_kwh, dirty.id, dirty.carbon_g_per_kwh, known))
    return tuple(points)


@dataclass(frozen=True)
class WindowChoice:
    start: datetime
    plan: Plan
    grams: float                      # estimate for the whole batch when started at `start`
    grams_now: float                  # the same batch started now
    run_h: float                      # the batch's duration on the chosen plan (est. ms/token × tokens)
    known: bool                       # a forecast covered the chosen window (else flat values only)

    @property
    def saving_g(self) -> float:
        return self.grams_now - self.grams

    @property
    def saving_fraction(self) -> float:
        return self.saving_g / self.grams_now if self.grams_now > 0 else 0.0


def greenest_window(footprint: ModelFootprint, peers: Sequence[Peer], ingress: Ingress, weights: Weights,
                    series_by_peer: Mapping[str, IntensitySeries], now: datetime, tokens: int,
                    within_h: float, step_h: float = 0.5) -> WindowChoice:
    """When to start a batch of `tokens` so that it finishes within `within_h` hours with the least CO2."""
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens <= 0:
        raise InvalidInput("tokens", tokens, "expected a whole number of tokens > 0")
    for field, value in (("within_h", within_h), ("step_h", step_h)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 24 * 14:
            raise InvalidInput(field, value, "expected hours > 0 (at most two weeks)")
    best: WindowChoice | None = None
    grams_now: float | None = None
    shortest_h = None
    steps = int(within_h / step_h + 1e-9)
    for i in range(steps + 1):
        start = now + timedelta(hours=i * step_h)
        plan = _plan_for(footprint, peers, ingress, weights, series_by_peer, start, start)
        if plan is None:
            continue
        run_h = tokens * plan.metrics.est_ms_per_token / 3.6e6
        end = start + timedelta(hours=run_h)
        plan = _plan_for(footprint, peers, ingress, weights, series_by_peer, start, end) or plan
        run_h = tokens * plan.metrics.est_ms_per_token / 3.6e6
        shortest_h = run_h if shortest_h is None else min(shortest_h, run_h)
        if i * step_h + run_h > within_h + 1e-9:
            continue
        mean_peers, known = peers_at(peers, series_by_peer, start, start + timedelta(hours=run_h))
        grams = plan_g_per_1k_tokens(plan, footprint, {p.id: p for p in mean_peers}) * tokens / 1000.0
        if i == 0:
            grams_now = grams
        if best is None or grams < best.grams - 1e-12:
            best = WindowChoice(start, plan, grams, 0.0, run_h, known)
    if best is None:
        need = "no feasible plan" if shortest_h is None else f"the batch needs {shortest_h:.2f} h"
        raise InvalidInput("within_h", within_h, f"no start fits: {need}")
    if grams_now is None:   # cannot even finish when started now: compare with the best itself
        grams_now = best.grams
    return dataclasses.replace(best, grams_now=grams_now)


def _plan_for(footprint, peers, ingress, weights, series_by_peer, start, end) -> Plan | None:
    moment_peers, _ = peers_at(peers, series_by_peer, start, end if end > start else None)
    plan = make_plan(footprint, moment_peers, ingress, Policy.CARBON, weights)
    return plan if plan.feasible else None
