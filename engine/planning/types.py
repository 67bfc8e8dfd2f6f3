"""Frozen inputs of the planning core. Built and validated by shells (engine.swarm, GUI, coordinator)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from engine.carbon_values import CarbonSource


class Policy(StrEnum):
    VRAM = "vram"        # baseline: most free VRAM first, ignores carbon and distance
    CARBON = "carbon"    # carbon + distance (+ VRAM) weighted score


@dataclass(frozen=True)
class Peer:
    id: str
    lat: float
    lon: float
    free_vram_gb: float
    carbon_g_per_kwh: float          # resolved before planning (see engine.carbon)
    carbon_source: CarbonSource
    gpu: str | None = None
    tflops: float | None = None      # dense fp16/bf16 TFLOPS; None -> GPU table / default
    power_w: float | None = None     # board power under load; None -> GPU table / default
    rtt_ms: float | None = None      # measured round trip to the ingress, overrides distance
    # Measured on the live swarm for the model being planned (engine.runner.calibrate); None -> GPU table
    ms_per_layer: float | None = None    # one decoder layer's decode step
    head_ms: float | None = None         # final norm + lm_head, when measured on a last stage
    rtt_ms_to: tuple[tuple[str, float], ...] = ()   # measured round trips to other peers, by id
    country: str | None = None       # ISO 3166 alpha-2 under (lat, lon), resolved by the shell


@dataclass(frozen=True)
class Ingress:
    lat: float
    lon: float
    name: str = "ingress"


@dataclass(frozen=True)
class Weights:
    """User preferences; `normalised()` makes them sum to 1 (all-zero -> equal thirds)."""

    carbon: float = 0.6
    distance: float = 0.3
    vram: float = 0.1

    def normalised(self) -> Weights:
        total = self.carbon + self.distance + self.vram
        if total <= 0:
            return Weights(1 / 3, 1 / 3, 1 / 3)
        return Weights(self.carbon / total, self.distance / total, self.vram / total)
