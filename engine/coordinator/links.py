"""One joined runner as the coordinator sees it: its channel and the forward requests awaiting replies."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import torch

from engine.errors import PrismnError
from engine.transport.base import Channel, ConnectionClosed
from engine.transport.frames import FrameError, frame_to_tensor, tensor_to_frame

# A stage that keeps beating but never answers is as good as lost; generous for a cold CPU start.
FORWARD_TIMEOUT_S = 120.0
_request_ids = itertools.count(1)


class PeerLost(PrismnError):
    """A runner needed by a deployment or a generation died (missed beats or dropped its connection)."""

    def __init__(self, peer_id: str, reason: str, link: PeerLink | None = None) -> None:
        self.peer_id = peer_id
        self.reason = reason
        self.link = link            # the connection that failed; a rejoined runner has a new one
        super().__init__(f"runner {peer_id} lost: {reason}")


class RunnerFailed(PrismnError):
    """A runner answered a request with an error (it stays alive)."""

    def __init__(self, peer_id: str, error: str) -> None:
        self.peer_id = peer_id
        super().__init__(f"runner {peer_id} failed: {error}")


class PeerLink:
    def __init__(self, peer_id: str, channel: Channel, counts: Any = None) -> None:
        self.peer_id = peer_id
        self.channel = channel
        self.counts = counts                 # engine.coordinator.tour.FrameCounts, or None
        self._pending: dict[int, asyncio.Future[torch.Tensor]] = {}
        self.lost: PeerLost | None = None

    async def send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        if self.lost is not None:
            raise self.lost
        if self.counts is not None:
            self.counts.count("sent", header)
        try:
            await self.channel.send(header, payload)
        except (ConnectionClosed, FrameError, OSError) as exc:
            raise PeerLost(self.peer_id, f"send failed: {exc}", self) from None

    async def forward(self, session_id: str, position: int, tensor: torch.Tensor,
                      sampling: dict[str, Any] | None = None) -> torch.Tensor:
        """Send `tensor` (starting at `position`) through this runner's stage; its output tensor."""
        request_id = next(_request_ids)
        future: asyncio.Future[torch.Tensor] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            header, payload = tensor_to_frame("forward", tensor, request_id=request_id, session_id=session_id,
                                            position=position,
                                            **({"sampling": sampling} if sampling is not None else {}))
            await self.send(header, payload)
            return await asyncio.wait_for(future, FORWARD_TIMEOUT_S)
        except TimeoutError:
            raise PeerLost(self.peer_id, f"no answer to a forward in {FORWARD_TIMEOUT_S:g} s", self) from None
        finally:
            self._pending.pop(request_id, None)

    def on_result(self, msg: dict[str, Any], payload: bytes) -> None:
        future = self._pending.get(msg["request_id"])
        if future is None or future.done():
            return                      # a reply to a request already given up on
        if msg["type"] == "failed":
            future.set_exception(RunnerFailed(self.peer_id, msg["error"]))
        else:
            future.set_result(frame_to_tensor(msg, payload))

    def fail(self, reason: str) -> None:
        """The runner is gone: every waiting request raises PeerLost."""
        if self.lost is None:
            self.lost = PeerLost(self.peer_id, reason, self)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(self.lost)
