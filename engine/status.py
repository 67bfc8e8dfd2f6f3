"""The status words of runners (peers) and of a deployment's stages: one StrEnum each, used by the
coordinator's registry and deployment, the store and the GUI. The values are the words on the wire,
in the store and in the GUI's state file.

A peer:  LIVE (joined and beating, holds no stage of the current deployment) -> LOADING (its stage)
         -> READY (holds its stage) -> DEAD (missed MISSED_BEATS beats or dropped its connection).
A stage: PENDING -> LOADING -> READY, or LOST (its runner died) / FAILED (it could not load).
"""

from __future__ import annotations

from enum import StrEnum


class PeerStatus(StrEnum):
    LIVE = "live"
    LOADING = "loading"
    READY = "ready"
    DEAD = "dead"

    @classmethod
    def read(cls, word: str) -> PeerStatus:
        """The status a stored word names; stores written before 2026-12 said "alive" for LIVE."""
        return cls(_OLD_WORDS.get(word, word))


_OLD_WORDS = {"alive": PeerStatus.LIVE.value}


class StageStatus(StrEnum):
    PENDING = "pending"
    LOADING = "loading"
    READY = "ready"
    LOST = "lost"
    FAILED = "failed"
