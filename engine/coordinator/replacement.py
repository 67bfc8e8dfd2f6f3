"""Re-placing a running deployment when the grids change: the coordinator's schedule and the migration.

Schedule: every `period_s` (default 15 min) and whenever the set of live peers changes, `check()`
re-resolves every live peer's carbon signal (fresh values from the live sources), re-plans with the
running plan's model, policy and weights, and asks the pure decision (engine.planning.replacement)
whether the move repays itself at the request rate measured at the ingress. In "auto" mode a move
that pays is made at once; in "ask" mode it waits as `proposal` until `accept()`.

Migration, in order (one at a time):
  1. prepare  a pending deployment of the new plan, outside the store until it is switched to;
  2. warm     runners outside the running plan load their new stage now, while the old plan serves;
              a runner that already holds its new stage is ready at once;
  3. switch   new requests wait at the ingress gate, requests in flight finish on the old plan,
              then runners of the old plan whose stage changes load theirs (a runner holds one stage);
              the pending deployment becomes the current one (stored) and the gate opens;
  4. release  runners of the old plan that hold nothing in the new one drop their weights.
A request is never split across plans nor started twice: it runs wholly on the old plan (it began
before the switch) or wholly on the new one (it waited at the gate).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.carbon.resolver import CarbonResolver
from engine.carbon_values import CarbonSource, SignalKind
from engine.coordinator import registry as reg
from engine.coordinator.deployment import FAILED, LOADING, LOST, READY, Deployment, footprint_for, replan
from engine.errors import InfeasiblePlan, InvalidInput
from engine.plan import Plan
from engine.planning.replacement import (
    DEFAULT_HORIZON_H,
    DEFAULT_THRESHOLD,
    MigrationDecision,
    ServingRate,
    decide_migration,
    stage_weight_bytes,
)
from engine.planning.types import Peer

log = logging.getLogger("prismn.coordinator")

DEFAULT_PERIOD_S = 15 * 60.0
RATE_WINDOW_S = 15 * 60.0        # the request rate is measured over the last re-plan period
LOAD_TIMEOUT_S = 900.0
MODES = ("auto", "ask")


class TrafficGate:
    """Counts requests in flight and can hold new ones back while a migration switches plans; it also
    measures the request rate (requests and tokens over the last RATE_WINDOW_S)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._active = 0
        self._done: deque[tuple[float, int]] = deque()     # (finished at, tokens)
        self._since = clock()

    @contextlib.asynccontextmanager
    async def request(self):
        await self._open.wait()
        self._active += 1
        self._idle.clear()
        record = {"tokens": 0}
        try:
            yield record
        finally:
            self._active -= 1
            self._done.append((self._clock(), int(record["tokens"])))
            if self._active == 0:
                self._idle.set()

    @contextlib.asynccontextmanager
    async def closed(self):
        """New requests wait; returns once the ones in flight have finished; reopens on exit."""
        self._open.clear()
        try:
            await self._idle.wait()
            yield
        finally:
            self._open.set()

    def rate(self) -> ServingRate | None:
        """Requests/s and mean tokens per request over the window; None before any request."""
        now = self._clock()
        while self._done and self._done[0][0] < now - RATE_WINDOW_S:
            self._done.popleft()
        if not self._done:
            return None
        span_s = max(min(RATE_WINDOW_S, now - self._since), 1.0)
        tokens = sum(t for _, t in self._done)
        return ServingRate(len(self._done) / span_s, tokens / len(self._done))


@dataclass
class MigrationRecord:
    at_s: float                      # wall clock (time.time())
    from_peers: tuple[str, ...]
    to_peers: tuple[str, ...]
    decision: MigrationDecision
    mode: str                        # "auto" or "accepted"
    outcome: str = "pending"         # "done", or why it failed
    took_s: float = 0.0
    deployment_id: str = ""


@dataclass
class Replacement:
    coordinator: Any                 # engine.coordinator.service.Coordinator
    orchestrator: Any                # engine.coordinator.orchestrator.Orchestrator
    resolver: CarbonResolver = field(default_factory=CarbonResolver)
    period_s: float = DEFAULT_PERIOD_S
    horizon_h: float = DEFAULT_HORIZON_H
    threshold: float = DEFAULT_THRESHOLD
    mode: str = "auto"
    signal: SignalKind = SignalKind.AVERAGE
    on_change: Callable[[], None] | None = None      # called after each check / migration (e.g. GUI)
    proposal: tuple[Plan, MigrationDecision] | None = None
    last_decision: MigrationDecision | None = None
    history: list[MigrationRecord] = field(default_factory=list)
    load_gb_s: dict[str, float] = field(default_factory=dict)   # measured per runner
    _task: asyncio.Task | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidInput("mode", self.mode, f"expected one of {MODES}")
        if isinstance(self.period_s, bool) or not isinstance(self.period_s, int | float) or self.period_s <= 0:
            raise InvalidInput("period_s", self.period_s, "expected a positive number of seconds")

    # ---- schedule -------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        """Check every period, and soon after the live peer set changes (a join or a death)."""
        peers = self._live_ids()
        next_s = time.monotonic() + self.period_s
        while True:
            await asyncio.sleep(min(1.0, self.period_s))
            now_peers = self._live_ids()
            if time.monotonic() >= next_s or now_peers != peers:
                peers, next_s = now_peers, time.monotonic() + self.period_s
                try:
                    await self.check()
                except Exception:       # the schedule must survive a bad check
                    log.exception("re-placement check failed")

    def _live_ids(self) -> frozenset[str]:
        return frozenset(record.id for record in self.coordinator.live_peers())

    # ---- one check ------------------------------------------------------------------------

    async def check(self) -> MigrationDecision | None:
        """Re-plan at fresh intensities; migrate (auto) or keep the proposal (ask). None: nothing runs."""
        dep = self.coordinator.deployment
        if dep is None or not dep.ready or self._lock.locked():
            return None
        footprint = await asyncio.to_thread(footprint_for, dep.plan, dep.model)
        peers = await asyncio.to_thread(self._fresh_peers)
        try:
            candidate = await asyncio.to_thread(replan, dep.plan, footprint, peers)
        except InfeasiblePlan:
            return None
        live = {p.id for p in peers}
        if any(s.peer_id not in live for s in dep.plan.stages):
            return None                 # a runner of the running plan is gone: recovery's job, not ours
        rate = self.orchestrator.traffic.rate() or ServingRate(0.0, 0.0)
        decision = decide_migration(dep.plan, candidate, footprint, peers, rate, self.load_gb_s,
                                    self.horizon_h, self.threshold)
        self.last_decision = decision
        self.proposal = (candidate, decision) if decision.migrate else None
        log.info("re-placement check: %s", decision.reason)
        self._changed()
        if decision.migrate and self.mode == "auto":
            await self.migrate(candidate, decision, "auto")
        return decision

    async def accept(self) -> MigrationRecord | None:
        """Carry out the waiting proposal ("ask me" mode)."""
        if self.proposal is None:
            return None
        candidate, decision = self.proposal
        return await self.migrate(candidate, decision, "accepted")

    def _fresh_peers(self) -> list[Peer]:
        return fresh_peers(self.coordinator.live_peers(), self.resolver, self.signal)

    # ---- migration ------------------------------------------------------------------------

    async def migrate(self, candidate: Plan, decision: MigrationDecision, mode: str) -> MigrationRecord:
        async with self._lock:
            old = self.coordinator.deployment
            record = MigrationRecord(time.time(), _peer_ids(old.plan), _peer_ids(candidate), decision, mode)
            self.history.append(record)
            self.proposal = None
            started = time.monotonic()
            try:
                new = await self._move(old, candidate)
                record.outcome, record.deployment_id = "done", new.id
            except Exception as exc:       # the old plan keeps serving: a failed move loses nothing
                log.warning("migration failed, staying on %s: %s", old.id, exc)
                record.outcome = f"failed: {exc}"
            finally:
                self.coordinator.pending_deployment = None
            record.took_s = time.monotonic() - started
            self._changed()
            return record

    async def _move(self, old: Deployment, candidate: Plan) -> Deployment:
        coordinator = self.coordinator
        # 1. prepare
        new = Deployment(uuid.uuid4().hex[:24], candidate, old.model, on_progress=old.on_progress)
        coordinator.pending_deployment = new
        old_stage = {s.peer_id: s for s in old.plan.stages}
        warm = [s.peer_id for s in candidate.stages if s.peer_id not in old_stage]
        # 2. warm: load beside the running plan
        sent_s = {peer: time.monotonic() for peer in warm}
        for peer_id in warm:
            await coordinator.links[peer_id].send(new.stage_message(peer_id))
        await self._wait(new, warm, sent_s)
        coordinator.pending_deployment = None
        # 3. switch between requests: the normal deploy of the candidate, now that the warm runners
        # hold their weights (they answer ready at once); runners moving from an old stage load here.
        async with self.orchestrator.traffic.closed():
            if coordinator.deployment is not old:
                raise RuntimeError("the running deployment changed meanwhile (a recovery)")
            current = await coordinator.deploy_once(candidate, old.model, old.on_progress, LOAD_TIMEOUT_S)
        # 4. release the runners the new plan does not use
        for peer_id in old_stage:
            if peer_id not in current.status and peer_id in coordinator.links:
                await coordinator.links[peer_id].send({"type": "release", "deployment_id": old.id})
                coordinator.registry.set_status(peer_id, reg.LIVE)
        return current

    async def _wait(self, dep: Deployment, peers: list[str], sent_s: dict[str, float]) -> None:
        """Until `peers` are ready in `dep` (measuring each one's load speed); raises if one is lost."""
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        waiting = set(peers)
        while waiting:
            for peer_id in list(waiting):
                status = dep.status.get(peer_id)
                if not self.coordinator.registry.is_alive(peer_id) or status in (LOST, FAILED):
                    raise RuntimeError(f"{peer_id} could not load its new stage ({status})")
                if status == READY:
                    waiting.discard(peer_id)
                    self._measured(dep, peer_id, time.monotonic() - sent_s[peer_id])
            if time.monotonic() > deadline:
                raise RuntimeError(f"stages {sorted(waiting)} not ready within {LOAD_TIMEOUT_S:g} s")
            if waiting:
                dep.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(dep.changed.wait(), 0.5)

    def _measured(self, dep: Deployment, peer_id: str, seconds: float) -> None:
        stage = next(s for s in dep.plan.stages if s.peer_id == peer_id)
        if seconds > 0.05 and dep.fraction.get(peer_id, 0.0) >= 1.0:
            try:
                footprint = footprint_for(dep.plan, dep.model)
            except InvalidInput:
                return
            self.load_gb_s[peer_id] = stage_weight_bytes(footprint, stage) / 1e9 / seconds

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                log.exception("re-placement on_change callback failed")

    def snapshot(self) -> dict[str, Any]:
        """For other threads (GUI): the last decision, the waiting proposal and the history."""
        return {
            "mode": self.mode, "period_s": self.period_s,
            "last_decision": self.last_decision.to_dict() if self.last_decision else None,
            "proposal": self.proposal[1].to_dict() if self.proposal else None,
            "history": [{"at_s": r.at_s, "from": list(r.from_peers), "to": list(r.to_peers), "mode": r.mode,
                         "outcome": r.outcome, "took_s": r.took_s, "saving_fraction": r.decision.saving_fraction,
                         "migration_g": r.decision.migration_g, "payback_s": r.decision.to_dict()["payback_s"]}
                        for r in self.history],
        }


def fresh_peers(records: Sequence[Any], resolver: CarbonResolver, kind: SignalKind) -> list[Peer]:
    """Live runners (registry records) as planning Peers at fresh intensities of `kind`; a runner that
    states its own value keeps it. Blocking (HTTP): call it in a thread."""
    peers = [record.as_peer() for record in records]
    signals = resolver.signals([p.lat for p in peers], [p.lon for p in peers], kind=kind)
    return [p if p.carbon_source is CarbonSource.EXPLICIT else
            dataclasses.replace(p, carbon_g_per_kwh=s.g_per_kwh, carbon_source=s.source)
            for p, s in zip(peers, signals, strict=True)]


def pending_progress(dep: Deployment, peer_id: str, msg: dict[str, Any]) -> None:
    """A runner's progress on the pending (not yet current) deployment: kept in memory only."""
    kind = msg["type"]
    if kind == "load_progress":
        total = msg["total_bytes"]
        dep.set(peer_id, LOADING, msg["loaded_bytes"] / total if total else 0.0)
    elif kind == "ready":
        dep.set(peer_id, READY)
    elif kind == "load_failed":
        dep.errors[peer_id] = msg["error"]
        dep.set(peer_id, FAILED)


def _peer_ids(plan: Plan) -> tuple[str, ...]:
    return tuple(s.peer_id for s in plan.stages)
