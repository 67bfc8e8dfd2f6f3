"""What live runners measured about themselves: stage step times per model, and round trips.

Kept per peer and model: a runner times the stage it loaded (`record_stage`, right after loading),
and every generation's step traces refine it with the decode compute each stage really took
(`record_live`). The planner gets them as fields of its Peer values (`peers_for`), so plans over
live peers use measurements instead of the GPU table.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.coordinator.registry import PeerState
from engine.planning.types import Ingress, Peer


@dataclass(frozen=True)
class StageMeasurement:
    ms_per_layer: float
    head_ms: float | None
    prefill_ms: float | None
    prefill_tokens: int | None


class Measurements:
    def __init__(self) -> None:
        self.stages: dict[tuple[str, str], StageMeasurement] = {}       # (peer id, model) ->
        self.rtt_ms: dict[tuple[str, str], float] = {}                  # (peer id, peer id or ingress key) ->

    def record_stage(self, peer_id: str, model: str, num_layers: int, last: bool, msg: dict) -> None:
        decode_ms = msg.get("decode_ms")
        if decode_ms is None or num_layers < 1:
            return
        head_ms = msg.get("head_ms") if last else None
        layers_ms = max(decode_ms - (head_ms or 0.0), 1e-3)
        self.stages[(peer_id, model)] = StageMeasurement(layers_ms / num_layers, head_ms, msg.get("prefill_ms"),
                                                         msg.get("prefill_tokens"))

    def record_live(self, peer_id: str, model: str, num_layers: int, last: bool, decode_ms: float | None) -> None:
        """A generation's mean decode compute on this stage; the head keeps the share it had when the
        runner timed itself (the trace reports the stage as a whole)."""
        if decode_ms is None or decode_ms <= 0 or num_layers < 1:
            return
        old = self.stages.get((peer_id, model))
        head_layers = old.head_ms / old.ms_per_layer if old is not None and old.head_ms and last else 0.0
        ms_per_layer = decode_ms / (num_layers + head_layers)
        self.stages[(peer_id, model)] = StageMeasurement(
            ms_per_layer, head_layers * ms_per_layer if head_layers else (old.head_ms if old else None),
            old.prefill_ms if old else None, old.prefill_tokens if old else None)

    def record_rtt(self, peer_id: str, other: str, rtt_ms: float | None) -> None:
        if rtt_ms is not None:
            self.rtt_ms[(peer_id, other)] = rtt_ms

    def peers_for(self, records: list[PeerState], model: str | None, ingress: Ingress | None) -> list[Peer]:
        """Planning peers with the measurements for `model` (head time from any stage of it that
        held the head) and the round trips to `ingress` and between each other."""
        ingress_key = ingress_key_of(ingress) if ingress is not None else None
        # A peer that has not held the head yet: the head/layer ratio another runner measured.
        ratios = sorted(m.head_ms / m.ms_per_layer for (_, name), m in self.stages.items()
                        if name == model and m.head_ms is not None)
        peers = []
        for record in records:
            stage = self.stages.get((record.id, model)) if model else None
            head_ms = None
            if stage is not None:
                head_ms = stage.head_ms if stage.head_ms is not None else \
                    (stage.ms_per_layer * ratios[len(ratios) // 2] if ratios else None)
            to_others = tuple((other, ms) for (peer, other), ms in self.rtt_ms.items()
                              if peer == record.id and not other.startswith("ingress@"))
            peers.append(record.as_peer(
                ms_per_layer=stage.ms_per_layer if stage else None, head_ms=head_ms,
                rtt_ms=self.rtt_ms.get((record.id, ingress_key)) if ingress_key else None,
                rtt_ms_to=to_others))
        return peers


def ingress_key_of(ingress: Ingress) -> str:
    return f"ingress@{ingress.lat:.3f},{ingress.lon:.3f}"
