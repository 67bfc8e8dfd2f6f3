"""Steps travelling the plan's tour, as the coordinator (the ingress) sees them.

A step leaves here once, to stage 1 (with the route of the later stages and this ingress as
`reply_to`), travels runner to runner, and comes back once, as the last stage's token. So per token
the coordinator sends one frame and receives one, and no hidden state ever passes through it
(`FrameCounts` keeps the figures). A step fails with PeerLost as soon as any runner of its tour is
lost, or a runner reports that its next hop is unreachable.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch

from engine.coordinator.links import PeerLost, RunnerFailed
from engine.transport.frames import frame_to_tensor

HIDDEN_DTYPES = frozenset({"float32", "float16", "bfloat16"})
StepTrace = list[list[float]]          # one [compute_ms, joules] per stage, in tour order


@dataclass
class FrameCounts:
    """Frames the coordinator sent and received by type, and how many carried hidden states."""

    sent: Counter[str] = field(default_factory=Counter)
    received: Counter[str] = field(default_factory=Counter)
    hidden_state_frames: int = 0

    def count(self, direction: str, header: dict[str, Any]) -> None:
        (self.sent if direction == "sent" else self.received)[str(header.get("type"))] += 1
        if header.get("dtype") in HIDDEN_DTYPES:
            self.hidden_state_frames += 1

    def snapshot(self) -> dict[str, Any]:
        return {"sent": dict(self.sent), "received": dict(self.received),
                "hidden_state_frames": self.hidden_state_frames}


@dataclass
class _Pending:
    future: asyncio.Future[tuple[torch.Tensor, StepTrace]]
    peers: tuple[str, ...]               # the tour's runners, stage order


class TourSteps:
    """The steps in flight, by their unguessable request id."""

    def __init__(self) -> None:
        self._pending: dict[int, _Pending] = {}

    def open(self, peers: tuple[str, ...]) -> tuple[int, asyncio.Future[tuple[torch.Tensor, StepTrace]]]:
        request_id = secrets.randbits(52)
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = _Pending(future, peers)
        return request_id, future

    def close(self, request_id: int) -> None:
        self._pending.pop(request_id, None)

    def on_result(self, peer_id: str, msg: dict[str, Any], payload: bytes) -> None:
        """The last stage's token; a result from any other runner is ignored."""
        step = self._pending.get(msg["request_id"])
        if step is None or step.future.done() or peer_id != step.peers[-1]:
            return
        step.future.set_result((frame_to_tensor(msg, payload), msg.get("trace", [])))

    def on_error(self, peer_id: str, msg: dict[str, Any], lost_peer: str | None, link: Any = None) -> None:
        """A runner of the tour refused or failed the step; `lost_peer`: the next hop it could not reach."""
        step = self._pending.get(msg.get("request_id", -1))
        if step is None or step.future.done() or peer_id not in step.peers:
            return
        if lost_peer is not None:
            step.future.set_exception(PeerLost(lost_peer, f"unreachable from {peer_id}: {msg['reason']}", link))
        else:
            step.future.set_exception(RunnerFailed(peer_id, msg["reason"]))

    def peer_lost(self, lost: PeerLost) -> None:
        """Every step whose tour includes the lost runner fails now."""
        for step in self._pending.values():
            if lost.peer_id in step.peers and not step.future.done():
                step.future.set_exception(lost)
