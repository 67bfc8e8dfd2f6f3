"""One colour per runner / stage status, shared by the runners panel and the map."""

from __future__ import annotations

STATUS_COLOURS = {"live": "#3b82f6", "loading": "#f59e0b", "ready": "#22c55e", "dead": "#ef4444"}
PENDING_COLOUR = "#9ca3af"
# A deployment's stage statuses (engine.coordinator.deployment) as runner statuses.
_STAGE_AS_STATUS = {"lost": "dead", "failed": "dead"}


def status_colour(status: str) -> str:
    """The colour of a runner status (live/loading/ready/dead) or a stage status (pending/lost/failed …)."""
    status = _STAGE_AS_STATUS.get(status, status)
    return STATUS_COLOURS.get(status, PENDING_COLOUR)
