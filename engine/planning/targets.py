"""What a user asks of a plan: metric targets and where the model may be placed.

Targets (`max_ms_per_token`, `max_g_co2_per_1k`) bound the carbon plan's estimates; placement
constraints (`max_peers`, `allow_countries`, `deny_countries`, `exclude_peers`) bound which peers
either policy may use. Countries are ISO 3166 alpha-2 codes of the country under each peer's
coordinates (`Peer.country`, resolved by the shell); a peer whose country is unknown is never in
an allow-list, so data residency cannot be met by accident.

When no plan meets them, a `Binding` names the constraint that binds, what was asked and the
best value reachable (or found) without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from engine.errors import InvalidInput
from engine.plan import PlanMetrics
from engine.planning.types import Peer
from engine.validate import finite_number

_ISO2 = re.compile(r"^[A-Z]{2}$")


@dataclass(frozen=True)
class Targets:
    max_ms_per_token: float | None = None
    max_g_co2_per_1k: float | None = None
    max_peers: int | None = None
    allow_countries: frozenset[str] | None = None     # None: every country
    deny_countries: frozenset[str] = field(default_factory=frozenset)
    exclude_peers: frozenset[str] = field(default_factory=frozenset)

    @property
    def restricts_placement(self) -> bool:
        return bool(self.allow_countries is not None or self.deny_countries or self.exclude_peers)

    @property
    def any(self) -> bool:
        return (self.restricts_placement or self.max_peers is not None
                or self.max_ms_per_token is not None or self.max_g_co2_per_1k is not None)

    def to_dict(self) -> dict:
        """JSON form (sorted lists), only the constraints that are set."""
        out: dict = {}
        for name in ("max_ms_per_token", "max_g_co2_per_1k", "max_peers"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.allow_countries is not None:
            out["allow_countries"] = sorted(self.allow_countries)
        for name in ("deny_countries", "exclude_peers"):
            if getattr(self, name):
                out[name] = sorted(getattr(self, name))
        return out


NO_TARGETS = Targets()


@dataclass(frozen=True)
class Binding:
    """The constraint no plan can meet: `asked` vs the best `reachable` without it."""

    constraint: str          # a Targets field name, or "placement" (the allowed peers are too few)
    asked: float | None
    reachable: float | None
    message: str

    def to_dict(self) -> dict:
        return {"constraint": self.constraint, "asked": self.asked, "reachable": self.reachable,
                "message": self.message}


def country_code(value: object, field_name: str) -> str:
    """An ISO 3166 alpha-2 code, upper-cased ('de' -> 'DE'), else InvalidInput."""
    if not isinstance(value, str) or not _ISO2.match(value.strip().upper()):
        raise InvalidInput(field_name, value, "expected an ISO 3166 alpha-2 country code such as DE")
    return value.strip().upper()


def check_targets(targets: Targets, peers: tuple[Peer, ...]) -> Targets:
    """`targets` with country codes normalised; InvalidInput naming the field otherwise."""
    if not isinstance(targets, Targets):
        raise InvalidInput("targets", type(targets).__name__, "expected a Targets")
    max_ms, max_g, max_peers = targets.max_ms_per_token, targets.max_g_co2_per_1k, targets.max_peers
    if max_ms is not None:
        max_ms = finite_number(max_ms, "max_ms_per_token", minimum=0.0, above_minimum=True)
    if max_g is not None:
        max_g = finite_number(max_g, "max_g_co2_per_1k", minimum=0.0)
    if max_peers is not None:
        max_peers = finite_number(max_peers, "max_peers", minimum=1, integer=True)
    allow = targets.allow_countries
    if allow is not None:
        allow = frozenset(country_code(c, "allow_countries") for c in allow)
        if not allow:
            raise InvalidInput("allow_countries", "", "expected at least one country code")
    deny = frozenset(country_code(c, "deny_countries") for c in targets.deny_countries)
    known = {p.id for p in peers}
    for pid in sorted(targets.exclude_peers):
        if pid not in known:
            raise InvalidInput("exclude_peers", pid, "no peer with this id in the swarm")
    return Targets(max_ms, max_g, max_peers, allow, deny, frozenset(targets.exclude_peers))


def allowed_mask(peers: tuple[Peer, ...], targets: Targets) -> np.ndarray:
    """True for each peer the placement constraints let either policy use."""
    allow, deny, excluded = targets.allow_countries, targets.deny_countries, targets.exclude_peers
    return np.fromiter(
        ((allow is None or p.country in allow) and p.country not in deny and p.id not in excluded
         for p in peers), dtype=bool, count=len(peers))


def meets(metrics: PlanMetrics, targets: Targets) -> bool:
    """Does a feasible plan's metrics meet every target (placement is met by construction)?"""
    return ((targets.max_ms_per_token is None or metrics.est_ms_per_token <= targets.max_ms_per_token)
            and (targets.max_g_co2_per_1k is None
                 or metrics.g_co2_per_1k_tokens <= targets.max_g_co2_per_1k)
            and (targets.max_peers is None or metrics.peers_used <= targets.max_peers))


def placement_words(targets: Targets) -> str:
    """' with peers in DE, FR' / ' with no peers in CN' / ' with 2 peer(s) excluded', or ''."""
    parts = []
    if targets.allow_countries is not None:
        parts.append("peers in " + ", ".join(sorted(targets.allow_countries)))
    if targets.deny_countries:
        parts.append("no peers in " + ", ".join(sorted(targets.deny_countries)))
    if targets.exclude_peers:
        parts.append(f"{len(targets.exclude_peers)} peer(s) excluded")
    return " with " + " and ".join(parts) if parts else ""
