"""One colour per runner / stage status, shared by the runners panel and the map."""

from __future__ import annotations

from engine.status import PeerStatus, StageStatus

STATUS_COLOURS = {PeerStatus.LIVE: "#3b82f6", PeerStatus.LOADING: "#f59e0b", PeerStatus.READY: "#22c55e",
                  PeerStatus.DEAD: "#ef4444"}
PENDING_COLOUR = "#9ca3af"
# A deployment's stage statuses as runner statuses.
_STAGE_AS_STATUS = {StageStatus.LOST: PeerStatus.DEAD, StageStatus.FAILED: PeerStatus.DEAD}


def status_colour(status: str) -> str:
    """The colour of a runner status (live/loading/ready/dead) or a stage status (pending/lost/failed …)."""
    status = _STAGE_AS_STATUS.get(status, status)
    return STATUS_COLOURS.get(status, PENDING_COLOUR)
