"""The app's targets without Tk: the typed target fields -> engine Targets -> both plans.

The fields are parsed here (errors name the field, as the CLI's flags do); the planning is the
engine's: `plan_both` without targets, `plan_both_to_targets` with them, `plan_both_exact` when
the person pressed "Exact".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.errors import InvalidInput
from engine.plan import Plan
from engine.plan_text import certificate_message
from engine.planning.targets import Targets, allowed_mask


@dataclass(frozen=True)
class TargetsRequest:
    """What the targets panel says, as typed."""

    max_ms_text: str = ""
    max_g_text: str = ""
    max_peers_text: str = ""
    allow_countries: tuple[str, ...] = ()    # () -> every country
    exact: bool = False


NO_TARGETS_REQUEST = TargetsRequest()


def _number(text: str, field: str, *, integer: bool = False) -> float | int | None:
    text = str(text).strip()
    if not text:
        return None
    try:
        return int(text) if integer else float(text)
    except ValueError:
        raise InvalidInput(field, text, "expected a whole number" if integer else "expected a number") from None


def parse_targets(request: TargetsRequest) -> Targets:
    """Targets from the fields (range checks happen in the engine, naming the same fields)."""
    return Targets(max_ms_per_token=_number(request.max_ms_text, "max_ms_per_token"),
                   max_g_co2_per_1k=_number(request.max_g_text, "max_g_co2_per_1k"),
                   max_peers=_number(request.max_peers_text, "max_peers", integer=True),
                   allow_countries=frozenset(request.allow_countries) or None)


def plan_pair(footprint, peers, ingress, weights, request: TargetsRequest) -> tuple[Plan, Plan]:
    """(VRAM baseline, carbon plan) for the fields: plain sliders, to targets, or exact."""
    targets = parse_targets(request)
    if request.exact:
        from engine.planning.exact import plan_both_exact
        return plan_both_exact(footprint, peers, ingress, weights, targets)
    if targets.any:
        from engine.planning.to_targets import plan_both_to_targets
        return plan_both_to_targets(footprint, peers, ingress, weights, targets)
    from engine.planning.planner import plan_both
    return plan_both(footprint, peers, ingress, weights)


def disallowed_ids(peers, request: TargetsRequest) -> frozenset[str]:
    """Peers the country filter rules out (the map dims them)."""
    if not request.allow_countries or not peers:
        return frozenset()
    mask = allowed_mask(tuple(peers), Targets(allow_countries=frozenset(request.allow_countries)))
    return frozenset(p.id for p, ok in zip(peers, mask, strict=True) if not ok)


def swarm_countries(peers) -> list[str]:
    """The countries of a swarm's peers, most peers first (ties alphabetical)."""
    codes = [p.country for p in peers if p.country]
    if not codes:
        return []
    names, counts = np.unique(codes, return_counts=True)
    return [str(names[i]) for i in sorted(range(len(names)), key=lambda i: (-counts[i], names[i]))]


def certificate_text(plan: Plan | None) -> str:
    """'greedy plan within 1.8 % of optimal (proven optimum)', or '' without an exact run."""
    if plan is None:
        return ""
    return certificate_message(plan) or ""
