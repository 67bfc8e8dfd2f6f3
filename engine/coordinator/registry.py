"""Who is in the swarm and who is alive. No I/O and no clock: callers pass `now_s` (monotonic seconds).

A peer joins with its location and metrics, beats once per `heartbeat_s`, and is dead once
`MISSED_BEATS` beats are missing (or at once when its connection drops). Live peers become the
planning core's `Peer` values.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from engine.carbon_values import CarbonSource
from engine.planning.types import Peer
from engine.protocol.messages import MISSED_BEATS
from engine.status import PeerStatus

# peer status (engine.status), also the colour key of the GUI's runners panel
LIVE, LOADING, READY, DEAD = PeerStatus.LIVE, PeerStatus.LOADING, PeerStatus.READY, PeerStatus.DEAD
STATUSES = tuple(PeerStatus)


@dataclass(frozen=True)
class PeerState:
    id: str
    name: str
    lat: float
    lon: float
    gpu: str | None
    total_vram_gb: float
    free_vram_gb: float
    utilization_pct: float | None
    power_w: float | None
    carbon_g_per_kwh: float
    carbon_source: CarbonSource
    tflops: float | None
    status: PeerStatus
    last_beat_s: float
    address: str | None = None           # where the previous stage of a tour reaches it
    emulated_wan: bool = False
    wan_bandwidth_mbps: float | None = None
    energy_method: str | None = None

    def as_peer(self, ms_per_layer: float | None = None, head_ms: float | None = None,
                rtt_ms: float | None = None, rtt_ms_to: tuple[tuple[str, float], ...] = ()) -> Peer:
        """The planning core's Peer; the measured figures are those for the model being planned."""
        return Peer(id=self.id, lat=self.lat, lon=self.lon, free_vram_gb=self.free_vram_gb,
                    carbon_g_per_kwh=self.carbon_g_per_kwh, carbon_source=self.carbon_source,
                    gpu=self.gpu, tflops=self.tflops, power_w=self.power_w, rtt_ms=rtt_ms,
                    ms_per_layer=ms_per_layer, head_ms=head_ms, rtt_ms_to=rtt_ms_to)

    def summary(self) -> dict[str, Any]:
        """The GUI's row: id, lat, lon, gpu, free_vram_gb, utilization, carbon_g_per_kwh, status."""
        return {"id": self.id, "name": self.name, "lat": self.lat, "lon": self.lon, "gpu": self.gpu,
                "free_vram_gb": self.free_vram_gb, "total_vram_gb": self.total_vram_gb,
                "utilization": self.utilization_pct, "power_w": self.power_w,
                "carbon_g_per_kwh": self.carbon_g_per_kwh, "carbon_source": self.carbon_source.value,
                "status": self.status, "emulated_wan": self.emulated_wan, "energy_method": self.energy_method}


class Registry:
    """Peers by id. Single-threaded: the coordinator's event loop owns it."""

    def __init__(self, heartbeat_s: float) -> None:
        self.heartbeat_s = heartbeat_s
        self._peers: dict[str, PeerState] = {}

    def join(self, msg: dict[str, Any], carbon: tuple[float, CarbonSource], now_s: float) -> PeerState:
        """Register (or re-register) a peer from a validated `join` message."""
        record = PeerState(
            id=msg["peer_id"], name=msg["name"] or msg["peer_id"], lat=msg["lat"], lon=msg["lon"],
            gpu=msg["gpu"], total_vram_gb=msg["total_vram_gb"], free_vram_gb=msg["free_vram_gb"],
            utilization_pct=msg["utilization_pct"], power_w=msg["power_w"],
            carbon_g_per_kwh=carbon[0], carbon_source=carbon[1], tflops=msg["tflops"],
            status=LIVE, last_beat_s=now_s, address=msg.get("address"), emulated_wan=msg.get("emulated_wan", False),
            wan_bandwidth_mbps=msg.get("wan_bandwidth_mbps"), energy_method=msg.get("energy_method"))
        self._peers[record.id] = record
        return record

    def restore(self, record: PeerState) -> None:
        """A peer known from the store before a restart: listed, but dead until it rejoins."""
        self._peers[record.id] = replace(record, status=DEAD)

    def beat(self, peer_id: str, msg: dict[str, Any], now_s: float) -> PeerState | None:
        record = self._peers.get(peer_id)
        if record is None or record.status == DEAD:
            return None
        record = replace(record, gpu=msg["gpu"], total_vram_gb=msg["total_vram_gb"],
                         free_vram_gb=msg["free_vram_gb"], utilization_pct=msg["utilization_pct"],
                         power_w=msg["power_w"], last_beat_s=now_s)
        self._peers[peer_id] = record
        return record

    def set_status(self, peer_id: str, status: PeerStatus) -> None:
        record = self._peers.get(peer_id)
        if record is not None and record.status != DEAD:
            self._peers[peer_id] = replace(record, status=status)

    def mark_dead(self, peer_id: str) -> bool:
        """True when this call is what killed the peer."""
        record = self._peers.get(peer_id)
        if record is None or record.status == DEAD:
            return False
        self._peers[peer_id] = replace(record, status=DEAD)
        return True

    def expire(self, now_s: float) -> list[str]:
        """Mark dead every peer silent for MISSED_BEATS beats; returns the ids that just died."""
        limit_s = MISSED_BEATS * self.heartbeat_s
        silent = [p.id for p in self._peers.values() if p.status != DEAD and now_s - p.last_beat_s > limit_s]
        return [peer_id for peer_id in silent if self.mark_dead(peer_id)]

    def get(self, peer_id: str) -> PeerState | None:
        return self._peers.get(peer_id)

    def is_alive(self, peer_id: str) -> bool:
        record = self._peers.get(peer_id)
        return record is not None and record.status != DEAD

    def all(self) -> list[PeerState]:
        return sorted(self._peers.values(), key=lambda p: p.id)

    def alive(self) -> list[PeerState]:
        return [p for p in self.all() if p.status != DEAD]
