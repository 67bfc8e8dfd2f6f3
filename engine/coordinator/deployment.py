"""One deployment in flight: which runner holds which stage, how far each has loaded, and re-planning.

A deployment is a feasible Plan plus the model source the runners load it from. Stage statuses go
pending -> loading -> ready, or to lost (the runner died) / failed (it could not load). Re-planning
uses the same model footprint, policy and weights over the peers still alive (`make_plan`).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.coordinator.links import PeerLost, RunnerFailed
from engine.errors import InfeasiblePlan, InvalidInput
from engine.model.footprint import ModelFootprint
from engine.plan import Plan
from engine.planning.types import Ingress, Peer, Policy, Weights
from engine.status import StageStatus

PENDING, LOADING, READY, LOST, FAILED = (StageStatus.PENDING, StageStatus.LOADING, StageStatus.READY,
                                         StageStatus.LOST, StageStatus.FAILED)

ProgressCallback = Callable[[str, float, str], None]      # (peer_id, fraction 0..1, status)


@dataclass
class Deployment:
    id: str
    plan: Plan
    model: str                                  # what runners pass to engine.runner's model resolver
    status: dict[str, str] = field(default_factory=dict)
    fraction: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    on_progress: ProgressCallback | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    # the pipeline's access token: handed to every stage with its routes; stages present it to the
    # next stage, and serve only channels that present it (engine.runner.server)
    token: str = field(default_factory=lambda: secrets.token_hex(16))

    def __post_init__(self) -> None:
        for stage in self.plan.stages:
            self.status.setdefault(stage.peer_id, PENDING)
            self.fraction.setdefault(stage.peer_id, 0.0)

    def stage_message(self, peer_id: str) -> dict[str, object]:
        stage = next(s for s in self.plan.stages if s.peer_id == peer_id)
        return {"type": "deploy", "deployment_id": self.id, "model": self.model,
                "layer_start": stage.layer_start, "layer_end": stage.layer_end,
                "embeddings": stage.embeddings, "lm_head": stage.lm_head, "quant": self.plan.model.quant}

    def holds(self, peer_id: str, loaded: dict[str, object] | None) -> bool:
        """Whether a rejoining runner's `loaded` stage is exactly its stage of this deployment."""
        return loaded is not None and peer_id in self.status and loaded == {
            k: v for k, v in self.stage_message(peer_id).items() if k != "type"}

    def set(self, peer_id: str, status: str, fraction: float | None = None) -> None:
        if peer_id not in self.status:
            return
        self.status[peer_id] = status
        if fraction is not None:
            self.fraction[peer_id] = max(0.0, min(1.0, fraction))
        if status == READY:
            self.fraction[peer_id] = 1.0
        if self.on_progress is not None:
            try:
                self.on_progress(peer_id, self.fraction[peer_id], status)
            except Exception:       # a GUI callback must not take the coordinator down
                pass
        self.changed.set()

    @property
    def ready(self) -> bool:
        return all(s == READY for s in self.status.values())

    async def wait_ready(self, timeout_s: float) -> None:
        """Until every stage is ready; PeerLost / RunnerFailed as soon as one is lost or failed,
        TimeoutError after `timeout_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            for peer_id, status in self.status.items():
                if status == LOST:
                    raise PeerLost(peer_id, "lost while its stage was deployed")
                if status == FAILED:
                    raise RunnerFailed(peer_id, self.errors.get(peer_id, "could not load its stage"))
            if self.ready:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"stages not ready within {timeout_s:g} s")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                pass


def replan(plan: Plan, footprint: ModelFootprint, peers: list[Peer]) -> Plan:
    """The same request (model, ingress, policy, weights) over `peers`; raises InfeasiblePlan."""
    from engine.planning.planner import make_plan

    ingress = Ingress(lat=plan.ingress["lat"], lon=plan.ingress["lon"])
    weights = Weights(**{k: plan.weights[k] for k in ("carbon", "distance", "vram") if k in plan.weights})
    new_plan = make_plan(footprint, tuple(peers), ingress, Policy(plan.policy), weights)
    if not new_plan.feasible:
        raise InfeasiblePlan(new_plan.shortfall_gb or 0.0, new_plan.shortfall_layers or 0,
                             f"after losing runners, {len(peers)} live peer(s) remain")
    return new_plan


def footprint_for(plan: Plan, model: str) -> ModelFootprint:
    """The model footprint a plan was made for: its model name (a preset), else the model source."""
    from engine.model import footprint, load_spec
    from engine.model.sizing import device_kind_for

    try:
        spec = load_spec(plan.model.name)
    except InvalidInput:            # UnknownModel: the plan names a model by a path runners share
        spec = load_spec(model)
    return footprint(spec, quant=plan.model.quant, device_kind=device_kind_for(s.gpu for s in plan.stages))
