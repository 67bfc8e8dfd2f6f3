"""The carbon policy's plan objective, shared by the greedy plan to targets and the exact MILP.

    J(plan) = w_c · g_co2_per_1k_tokens / B_g + w_d · est_ms_per_token / B_ms + w_v · peers_used / B_p

with (w_c, w_d, w_v) the user's normalised weights and B_* the same metrics of the VRAM
baseline plan over the same allowed peers (max_peers not applied), so J = 1 means "as good as the
baseline" and every term is a plain ratio: J = 0.5 with carbon weight 1 is half the baseline's CO2.
Lower is better. It is the plan-level counterpart of the per-peer score the slider policy sorts by
(carbon emitted, latency, few big peers), measured on the plan's own estimates (engine.planning.
metrics), so a certificate's gap compares what the user sees. A baseline metric <= 0 (a grid at
0 gCO2/kWh) counts as 1 so its term stays a finite, unscaled value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.model.footprint import ModelFootprint
from engine.plan import PlanMetrics
from engine.planning.estimates import BANDWIDTH_EFFICIENCY, COMPUTE_EFFICIENCY, JOULES_PER_KWH
from engine.planning.gpus import GpuSpec
from engine.planning.types import Weights


@dataclass(frozen=True)
class Objective:
    weights: Weights             # normalised
    baseline_g_co2_per_1k: float
    baseline_ms_per_token: float
    baseline_peers: float

    @property
    def per_g_co2_per_1k(self) -> float:
        return self.weights.carbon / _positive(self.baseline_g_co2_per_1k)

    @property
    def per_ms_per_token(self) -> float:
        return self.weights.distance / _positive(self.baseline_ms_per_token)

    @property
    def per_peer(self) -> float:
        return self.weights.vram / _positive(self.baseline_peers)

    def value(self, metrics: PlanMetrics) -> float:
        return (self.per_g_co2_per_1k * metrics.g_co2_per_1k_tokens
                + self.per_ms_per_token * metrics.est_ms_per_token
                + self.per_peer * metrics.peers_used)

    def to_dict(self) -> dict:
        return {"weights": {"carbon": self.weights.carbon, "distance": self.weights.distance,
                            "vram": self.weights.vram},
                "baseline": {"g_co2_per_1k_tokens": self.baseline_g_co2_per_1k,
                             "est_ms_per_token": self.baseline_ms_per_token,
                             "peers_used": self.baseline_peers}}


def _positive(value: float) -> float:
    return value if value > 0 else 1.0


def objective_from_baseline(weights: Weights, baseline: PlanMetrics) -> Objective:
    return Objective(weights, baseline.g_co2_per_1k_tokens, baseline.est_ms_per_token,
                     float(baseline.peers_used))


@dataclass(frozen=True, eq=False)
class StageRates:
    """Per peer, the linear pieces of its stage time (engine.planning.estimates.stage_seconds):

        stage_s(L, last) = max(compute_s_per_layer · L + last · compute_s_head,
                               memory_s_per_layer · L + last · memory_s_head)
    and g_co2_per_s, what one second of that stage emits (power × grid intensity)."""

    compute_s_per_layer: np.ndarray
    compute_s_head: np.ndarray
    memory_s_per_layer: np.ndarray
    memory_s_head: np.ndarray
    g_co2_per_s: np.ndarray

    def seconds(self, peer: np.ndarray, layers: np.ndarray, last: np.ndarray) -> np.ndarray:
        return np.maximum(self.compute_s_per_layer[peer] * layers + last * self.compute_s_head[peer],
                          self.memory_s_per_layer[peer] * layers + last * self.memory_s_head[peer])


def stage_rates(footprint: ModelFootprint, gpus: Sequence[GpuSpec],
                carbon_g_per_kwh: np.ndarray) -> StageRates:
    tflops = np.array([g.tflops for g in gpus], dtype=np.float64) * 1e12 * COMPUTE_EFFICIENCY
    bandwidth = np.array([g.bandwidth_gb_s for g in gpus], dtype=np.float64) * 1e9 * BANDWIDTH_EFFICIENCY
    power = np.array([g.power_w for g in gpus], dtype=np.float64)
    layer_read = footprint.layer_bytes + footprint.kv_bytes_per_layer
    return StageRates(footprint.layer_flops_per_token / tflops, footprint.head_flops_per_token / tflops,
                      layer_read / bandwidth, footprint.lm_head_bytes / bandwidth,
                      power / JOULES_PER_KWH * np.asarray(carbon_g_per_kwh, dtype=np.float64))


def cost_per_stage_second(objective: Objective, rates: StageRates) -> np.ndarray:
    """J added per second of stage time on each peer: its carbon and its share of ms/token."""
    return 1000.0 * (objective.per_g_co2_per_1k * rates.g_co2_per_s + objective.per_ms_per_token)
