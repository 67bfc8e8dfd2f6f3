"""Memory figures a runner reports, bounded by what a device can hold before the planner believes them.

The message schema only checks ranges (0..1e6 GB). A runner that has joined (it knows the secret)
could still claim 999,999 GB free and be handed the whole model. So, per report:
- total memory is capped by what one device holds: the largest accelerator shipping (288 GB), or,
  for a CPU runner (which reports host memory), 4 TiB;
- free memory is at most total memory;
- total memory is the device's: it does not change while the runner stays joined. A later report
  that differs keeps the joined figure and is flagged (logged once per runner).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("prismn.coordinator")

MAX_GPU_GB = 288.0         # AMD MI355X / NVIDIA B300, the largest single-device memory in 2026
MAX_HOST_GB = 4096.0       # a CPU runner reports host memory
TOTAL_TOLERANCE_GB = 0.5   # drivers round; a runner's own stage bytes move its figure a little


@dataclass
class VramSanity:
    flagged: dict[str, list[str]] = field(default_factory=dict)   # peer id -> what was flagged

    def check(self, peer_id: str, msg: dict[str, Any], joined_total_gb: float | None = None) -> dict[str, Any]:
        """`msg` (a join or heartbeat) with its memory figures made plausible."""
        cpu = str(msg.get("gpu") or "CPU").strip().upper() == "CPU"
        cap_gb = MAX_HOST_GB if cpu else MAX_GPU_GB
        total_gb, free_gb = msg["total_vram_gb"], msg["free_vram_gb"]
        notes = []
        if total_gb > cap_gb:
            notes.append(f"total {total_gb:g} GB is more than a {'host' if cpu else 'GPU'} holds: {cap_gb:g} GB")
            total_gb = cap_gb
        if joined_total_gb is not None and abs(total_gb - joined_total_gb) > TOTAL_TOLERANCE_GB:
            notes.append(f"total jumped from {joined_total_gb:g} to {total_gb:g} GB: kept {joined_total_gb:g}")
            total_gb = joined_total_gb
        if free_gb > total_gb:
            notes.append(f"free {free_gb:g} GB is more than its total {total_gb:g} GB")
            free_gb = total_gb
        if notes:
            if peer_id not in self.flagged:
                log.warning("%s reports implausible memory (%s)", peer_id, "; ".join(notes))
            self.flagged.setdefault(peer_id, []).extend(n for n in notes if n not in self.flagged.get(peer_id, []))
        return {**msg, "total_vram_gb": total_gb, "free_vram_gb": free_gb}
