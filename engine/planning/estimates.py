"""Plan estimates (the figures of PlanMetrics): tour length, time per token, carbon per 1,000 tokens, VRAM use.

Time per token (one decode step through the pipeline, batch 1):
    est_ms_per_token = Σ legs one-way latency (ingress -> stage 1 -> ... -> stage k -> ingress)
                       + Σ stages max(flops / (tflops · COMPUTE_EFFICIENCY),
                                      bytes_read / (bandwidth · BANDWIDTH_EFFICIENCY))
  roofline model (Williams et al. 2009): a stage is bound by compute or by reading its weights
  and its KV cache (taken at the full context: a worst case) once per token. A peer that timed
  itself on the live swarm (`StageTiming`) uses its measured ms per layer (+ head) instead, and a
  leg with a measured round trip uses RTT/2.
Carbon per 1,000 tokens:
    g_co2_per_1k_tokens = 1000 · Σ stages power_w · stage_s / 3.6e6 [kWh] · carbon_g_per_kwh
  i.e. the GPU's board power while it computes its stage; idle time and the network are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine import GB
from engine.model.footprint import ModelFootprint
from engine.plan import PlanMetrics, Stage
from engine.planning.gpus import GpuSpec
from engine.planning.latency import one_way_ms

COMPUTE_EFFICIENCY = 0.5      # fraction of datasheet TFLOPS a decode step reaches
BANDWIDTH_EFFICIENCY = 0.8    # fraction of datasheet memory bandwidth actually streamed
JOULES_PER_KWH = 3.6e6


@dataclass(frozen=True)
class StageTiming:
    """What a runner measured for the model planned: one decoder layer's decode step, and the head."""

    ms_per_layer: float
    head_ms: float | None = None      # None: scaled from ms_per_layer by the bytes the head reads


@dataclass(frozen=True)
class StageLoad:
    """What one stage computes per token."""

    num_layers: int
    last: bool


def stage_seconds(footprint: ModelFootprint, load: StageLoad, gpu: GpuSpec) -> float:
    """Per-token time of one stage on one GPU (roofline: the slower of compute and memory)."""
    flops = load.num_layers * footprint.layer_flops_per_token
    bytes_read = load.num_layers * (footprint.layer_bytes + footprint.kv_bytes_per_layer)
    if load.last:
        flops += footprint.head_flops_per_token
        bytes_read += footprint.lm_head_bytes
    compute_s = flops / (gpu.tflops * 1e12 * COMPUTE_EFFICIENCY)
    memory_s = bytes_read / (gpu.bandwidth_gb_s * 1e9 * BANDWIDTH_EFFICIENCY)
    return max(compute_s, memory_s)


def layer_joules(footprint: ModelFootprint, gpus: Sequence[GpuSpec]) -> np.ndarray:
    """Energy one decoder layer's token takes on each GPU: the same formula as the plan's total."""
    one_layer = StageLoad(num_layers=1, last=False)
    return np.array([g.power_w * stage_seconds(footprint, one_layer, g) for g in gpus], dtype=np.float64)


def measured_seconds(footprint: ModelFootprint, load: StageLoad, timing: StageTiming) -> float:
    """Per-token time of one stage from its runner's own measurement."""
    ms = load.num_layers * timing.ms_per_layer
    if load.last:
        layer_read = footprint.layer_bytes + footprint.kv_bytes_per_layer
        ms += timing.head_ms if timing.head_ms is not None else \
            timing.ms_per_layer * footprint.lm_head_bytes / max(layer_read, 1)
    return ms / 1000.0


def stage_times_s(footprint: ModelFootprint, stages: Sequence[Stage], gpus: Sequence[GpuSpec],
                  timings: Sequence[StageTiming | None] | None = None) -> list[float]:
    """Each stage's per-token compute time: measured where its runner timed itself, else roofline."""
    timings = timings or [None] * len(stages)
    return [measured_seconds(footprint, StageLoad(s.num_layers, s.lm_head), t) if t is not None
            else stage_seconds(footprint, StageLoad(s.num_layers, s.lm_head), g)
            for s, g, t in zip(stages, gpus, timings, strict=True)]


def leg_ms(leg_km: np.ndarray, first_rtt_ms: float, last_rtt_ms: float,
           leg_rtt_ms: np.ndarray | None = None) -> np.ndarray:
    """One-way latency of every tour leg: measured RTT/2 where known (`leg_rtt_ms`, NaN elsewhere;
    the ingress legs also from `first_rtt_ms` / `last_rtt_ms`), else the distance model."""
    ms = one_way_ms(leg_km)
    if leg_rtt_ms is not None:
        rtt = np.asarray(leg_rtt_ms, dtype=np.float64)
        ms = np.where(np.isnan(rtt), ms, rtt / 2.0)
    if not np.isnan(first_rtt_ms):
        ms[0] = first_rtt_ms / 2.0
    if not np.isnan(last_rtt_ms):
        ms[-1] = last_rtt_ms / 2.0
    return ms


def plan_metrics(footprint: ModelFootprint, stages: Sequence[Stage], gpus: Sequence[GpuSpec],
                 leg_km: np.ndarray, rtt_ms: tuple[float, float],
                 timings: Sequence[StageTiming | None] | None = None,
                 leg_rtt_ms: np.ndarray | None = None) -> PlanMetrics:
    """Metrics of a plan whose stages (tour order) run on `gpus`; `leg_km` has k + 1 legs."""
    seconds = stage_times_s(footprint, stages, gpus, timings)
    network_ms = float(leg_ms(np.asarray(leg_km, dtype=np.float64), *rtt_ms, leg_rtt_ms).sum())
    grams = sum(g.power_w * sec / JOULES_PER_KWH * s.carbon_g_per_kwh
                for s, g, sec in zip(stages, gpus, seconds, strict=True))
    layers = sum(s.num_layers for s in stages)
    free = sum(s.vram_free_gb for s in stages)
    return PlanMetrics(
        peers_used=len(stages),
        tour_km=float(np.sum(leg_km)),
        avg_carbon_g_per_kwh=sum(s.carbon_g_per_kwh * s.num_layers for s in stages) / layers,
        est_ms_per_token=network_ms + 1000.0 * sum(seconds),
        g_co2_per_1k_tokens=1000.0 * grams,
        vram_utilization=(sum(s.vram_required_gb for s in stages) / free) if free > 0 else 0.0,
    )


def required_gb(footprint: ModelFootprint, num_layers: int, *, first: bool, last: bool) -> float:
    return footprint.stage_bytes(num_layers, first=first, last=last) / GB
