"""What one caller may take from a stand-alone runner, so a stranger cannot starve the others.

- Time: a channel must send its first frame within `first_frame_s` and then never idle longer than
  `idle_channel_s`; a frame once begun must arrive whole within `frame_stall_s` plus its size at
  `min_frame_bytes_per_s` (a sender that stalls inside a 250 MiB frame does not pin it for ever).
- Size: a frame's payload is capped by what this stage can use: the model's whole context of hidden
  states (`payload_limit`), not the transport's generic 256 MiB.
- Sessions: each is bound to the caller that opened it (`SessionOwners`); another caller can neither
  step nor end it. A caller holds at most `max_sessions_per_client` sessions and
  `max_kv_tokens_per_client` cached positions in all.
- Rate: at most `max_frames_per_s` frames per channel (token bucket, burst of twice that).

A "caller" is who the transport says is on the other end: an iroh endpoint id (authenticated by
QUIC), or a TCP connection's host:port (one connection). Past a limit the caller gets an `error`
frame naming the limit, and the runner keeps serving everyone else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from engine.errors import InvalidInput
from engine.transport.frames import FrameLimits

MIB = 2**20


@dataclass(frozen=True)
class RunnerLimits:
    first_frame_s: float = 10.0
    idle_channel_s: float = 600.0
    frame_stall_s: float = 30.0
    min_frame_bytes_per_s: float = 1 * MIB
    max_sessions_per_client: int = 16
    max_kv_tokens_per_client: int = 65_536
    max_frames_per_s: float = 500.0
    max_header_bytes: int = 64 * 1024

    def frame_limits(self, max_read_payload_bytes: int) -> FrameLimits:
        """Reading is capped by what the stage can use; sending (logits) keeps the transport's cap."""
        return FrameLimits(max_header_bytes=self.max_header_bytes, max_read_payload_bytes=max_read_payload_bytes,
                           stall_s=self.frame_stall_s, min_bytes_per_s=self.min_frame_bytes_per_s)


def payload_limit(max_positions: int, hidden_size: int) -> int:
    """The largest tensor a runner receives: a whole context of fp32 hidden states (token ids, for the
    first stage, are smaller), within the transport's 1 MiB..256 MiB."""
    return int(min(256 * MIB, max(1 * MIB, max(max_positions, 1) * max(hidden_size, 1) * 4)))


class RateLimiter:
    """A token bucket: `rate_per_s` on average, bursts up to twice that."""

    def __init__(self, rate_per_s: float) -> None:
        self.rate_per_s = rate_per_s
        self.capacity = 2 * rate_per_s
        self._tokens = self.capacity
        self._last_s = time.monotonic()

    def allow(self, now_s: float | None = None) -> bool:
        now_s = time.monotonic() if now_s is None else now_s
        self._tokens = min(self.capacity, self._tokens + (now_s - self._last_s) * self.rate_per_s)
        self._last_s = now_s
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


@dataclass
class _Owned:
    owner: str
    kv_tokens: int = 0


@dataclass
class SessionOwners:
    """session id -> the caller that opened it and the positions it holds (a mirror of the executor's
    sessions, pruned against it: sessions the executor freed or expired are forgotten here too)."""

    limits: RunnerLimits
    _sessions: dict[str, _Owned] = field(default_factory=dict)

    def check(self, owner: str, session_id: str, position: int, new_tokens: int, live: set[str]) -> None:
        """Raise InvalidInput unless `owner` may add `new_tokens` at `position` to `session_id`."""
        self._prune(live)
        entry = self._sessions.get(session_id)
        if entry is not None and entry.owner != owner:
            raise InvalidInput("session_id", session_id, "belongs to another client")
        mine = [s for s in self._sessions.values() if s.owner == owner]
        if entry is None and len(mine) >= self.limits.max_sessions_per_client:
            raise InvalidInput("session_id", session_id, f"this client already holds "
                               f"{self.limits.max_sessions_per_client} sessions here (the most one may)")
        held = sum(s.kv_tokens for s in mine) - (entry.kv_tokens if entry else 0)
        if held + position + new_tokens > self.limits.max_kv_tokens_per_client:
            raise InvalidInput("position", position + new_tokens, f"this client's sessions would hold more than "
                               f"{self.limits.max_kv_tokens_per_client} cached positions here")

    def record(self, owner: str, session_id: str, kv_tokens: int) -> None:
        entry = self._sessions.setdefault(session_id, _Owned(owner))
        entry.kv_tokens = kv_tokens

    def check_end(self, owner: str, session_id: str, live: set[str]) -> None:
        self._prune(live)
        entry = self._sessions.get(session_id)
        if entry is not None and entry.owner != owner:
            raise InvalidInput("session_id", session_id, "belongs to another client")

    def forget(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def _prune(self, live: set[str]) -> None:
        for session_id in [s for s in self._sessions if s not in live]:
            del self._sessions[session_id]
