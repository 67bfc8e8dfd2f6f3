"""Should a running deployment move to a new plan? A pure decision: values in, decision out.

Steps (decide_migration):
  1. reprice   the current plan at the peers' fresh intensities (the grid changed, the plan did not);
  2. compare   gCO2 per 1k tokens, current vs candidate: the relative saving must pass the threshold;
  3. cost      what the move costs: each new stage's weight bytes ÷ that runner's measured load speed
               (stages load in parallel while the old ones keep serving), and the energy of loading
               (board power × load time × the runner's intensity);
  4. payback   the saving rate at the measured request rate repays the cost within the horizon.
All figures are estimates from the planner's energy model (engine.planning.estimates), not measurements.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from engine.errors import InvalidInput
from engine.model.footprint import ModelFootprint
from engine.plan import Plan, Stage
from engine.planning.estimates import JOULES_PER_KWH, StageLoad, stage_seconds
from engine.planning.gpus import peer_gpu_spec
from engine.planning.types import Peer

DEFAULT_HORIZON_H = 1.0
DEFAULT_THRESHOLD = 0.10      # move only for a saving of at least 10 % of gCO2 per 1k tokens
# Load speed assumed for a runner that has not loaded anything yet: a local NVMe SSD read into
# GPU memory through pinned buffers reaches 1-3 GB/s; 0.5 GB/s leaves room for slower disks.
DEFAULT_LOAD_GB_S = 0.5


@dataclass(frozen=True)
class ServingRate:
    """Measured at the ingress over the last window."""

    requests_per_s: float
    tokens_per_request: float

    @property
    def tokens_per_s(self) -> float:
        return self.requests_per_s * self.tokens_per_request


@dataclass(frozen=True)
class MigrationDecision:
    migrate: bool
    reason: str
    current_g_per_1k_tokens: float      # the running plan at fresh intensities (estimate)
    candidate_g_per_1k_tokens: float    # estimate
    saving_fraction: float              # (current - candidate) / current
    saving_g_per_h: float               # at the measured request rate
    migration_g: float                  # energy of loading the new stages × their intensity (estimate)
    migration_s: float                  # wall time until the new stages are ready (slowest stage)
    load_gb: float                      # weight bytes the new stages load, summed
    payback_s: float                    # migration_g ÷ saving rate; inf when nothing is saved
    horizon_h: float
    net_saving_g: float                 # over the horizon: saving - migration cost
    stages_to_load: tuple[str, ...]     # peer ids that must load something new

    def to_dict(self) -> dict[str, object]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["stages_to_load"] = list(self.stages_to_load)
        out["payback_s"] = None if math.isinf(self.payback_s) else self.payback_s
        out["estimate"] = True
        return out


def plan_g_per_1k_tokens(plan: Plan, footprint: ModelFootprint, peers: Mapping[str, Peer]) -> float:
    """gCO2 per 1k tokens of `plan` with each stage's peer at its current intensity (same model as
    engine.planning.estimates: board power × stage time per token × grid intensity)."""
    grams = 0.0
    for stage in plan.stages:
        peer = peers.get(stage.peer_id)
        if peer is None:
            raise InvalidInput("plan.stages.peer_id", stage.peer_id, "peer is not in the swarm any more")
        gpu = peer_gpu_spec(peer.gpu, peer.tflops, peer.power_w)
        seconds = stage_seconds(footprint, StageLoad(stage.num_layers, stage.lm_head), gpu)
        grams += gpu.power_w * seconds / JOULES_PER_KWH * peer.carbon_g_per_kwh
    return 1000.0 * grams


def stage_weight_bytes(footprint: ModelFootprint, stage: Stage) -> int:
    """Bytes a runner reads to hold `stage`: its layers, plus embeddings / final norm + head at the ends."""
    total = stage.num_layers * footprint.layer_bytes
    if stage.embeddings:
        total += footprint.embedding_bytes
    if stage.lm_head:
        total += footprint.final_norm_bytes + footprint.lm_head_bytes
    return total


def decide_migration(
    current: Plan,
    candidate: Plan,
    footprint: ModelFootprint,
    peers: Sequence[Peer],
    rate: ServingRate,
    load_gb_s: Mapping[str, float] | None = None,
    horizon_h: float = DEFAULT_HORIZON_H,
    threshold: float = DEFAULT_THRESHOLD,
) -> MigrationDecision:
    """Whether moving from `current` to `candidate` saves more carbon within `horizon_h` than it costs.

    `peers` carry fresh intensities; `load_gb_s` is each runner's measured load speed (GB/s), peers
    without one get DEFAULT_LOAD_GB_S. A stage a runner already holds (same peer, same layers, same
    ends) costs nothing."""
    _check(rate, horizon_h, threshold)
    by_id = {p.id: p for p in peers}
    if not candidate.feasible or not candidate.stages:
        return _stay("the candidate plan is infeasible", current, candidate, horizon_h)
    current_g = plan_g_per_1k_tokens(current, footprint, by_id)
    candidate_g = plan_g_per_1k_tokens(candidate, footprint, by_id)
    held = {_key(s) for s in current.stages}
    new_stages = [s for s in candidate.stages if _key(s) not in held]
    if not new_stages:
        return _stay("the candidate is the running plan", current, candidate, horizon_h, current_g, candidate_g)

    speeds = load_gb_s or {}
    load_s, load_g, load_bytes = [], 0.0, 0
    for stage in new_stages:
        peer = by_id[stage.peer_id]
        nbytes = stage_weight_bytes(footprint, stage)
        speed = speeds.get(stage.peer_id) or DEFAULT_LOAD_GB_S
        seconds = nbytes / (speed * 1e9)
        load_s.append(seconds)
        load_bytes += nbytes
        power_w = peer_gpu_spec(peer.gpu, peer.tflops, peer.power_w).power_w
        load_g += power_w * seconds / JOULES_PER_KWH * peer.carbon_g_per_kwh

    saving_fraction = (current_g - candidate_g) / current_g if current_g > 0 else 0.0
    saving_g_per_s = (current_g - candidate_g) / 1000.0 * rate.tokens_per_s
    payback_s = load_g / saving_g_per_s if saving_g_per_s > 0 else math.inf
    net_g = saving_g_per_s * horizon_h * 3600.0 - load_g
    if saving_fraction < threshold:
        reason = f"saving {saving_fraction:.1%} is below the {threshold:.0%} threshold"
        migrate = False
    elif rate.tokens_per_s <= 0:
        reason, migrate = "no traffic measured: nothing to repay the move", False
    elif payback_s > horizon_h * 3600.0:
        reason, migrate = f"payback {payback_s / 60:.1f} min is longer than the {horizon_h:g} h horizon", False
    else:
        reason, migrate = (f"saves {saving_fraction:.1%} gCO2/1k tokens; repaid in {payback_s / 60:.1f} min", True)
    return MigrationDecision(
        migrate=migrate, reason=reason, current_g_per_1k_tokens=current_g, candidate_g_per_1k_tokens=candidate_g,
        saving_fraction=saving_fraction, saving_g_per_h=saving_g_per_s * 3600.0, migration_g=load_g,
        migration_s=max(load_s), load_gb=load_bytes / 1e9, payback_s=payback_s, horizon_h=horizon_h,
        net_saving_g=net_g, stages_to_load=tuple(s.peer_id for s in new_stages),
    )


def _key(stage: Stage) -> tuple:
    return (stage.peer_id, stage.layer_start, stage.layer_end, stage.embeddings, stage.lm_head)


def _stay(reason: str, current: Plan, candidate: Plan, horizon_h: float,
          current_g: float = math.nan, candidate_g: float = math.nan) -> MigrationDecision:
    return MigrationDecision(False, reason, current_g, candidate_g, 0.0, 0.0, 0.0, 0.0, 0.0, math.inf,
                             horizon_h, 0.0, ())


def _check(rate: ServingRate, horizon_h: float, threshold: float) -> None:
    for field, value, low in (("requests_per_s", rate.requests_per_s, 0.0),
                              ("tokens_per_request", rate.tokens_per_request, 0.0),
                              ("horizon_h", horizon_h, 0.0), ("threshold", threshold, 0.0)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < low:
            raise InvalidInput(field, value, f"expected a finite number >= {low:g}")
    if horizon_h == 0:
        raise InvalidInput("horizon_h", horizon_h, "expected a horizon > 0 hours")
