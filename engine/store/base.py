"""The store interface and its records, shared by every backend.

`Store` validates every input once, here, then hands plain checked values to a backend's
primitives (`_put_peer`, `_insert_deployment`, ...). Both backends therefore accept and reject
exactly the same data, and nothing is written until the whole input has been checked, so a
rejected write never touches what is already stored.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from engine.carbon_values import CarbonSource
from engine.errors import InvalidInput, PrismnError
from engine.plan import Plan
from engine.status import PeerStatus, StageStatus
from engine.validate import finite_number

PEER_STATUSES = (PeerStatus.LIVE.value, PeerStatus.DEAD.value)   # what a store keeps of a peer's status
STAGE_STATUSES = tuple(s.value for s in StageStatus)
METRICS_RETENTION_S = 24 * 3600            # metrics history is kept for 24 h
MAX_ID_CHARS = 256
_CARBON_SOURCES = tuple(s.value for s in CarbonSource)


class StoreClosed(PrismnError):
    """The store was used after `close()`."""


class StoreUnavailable(PrismnError):
    """The backend cannot be reached or opened (server down, unreadable file)."""


# ---- checks shared by records and stores ------------------------------------------------

def check_id(value: Any, field_name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field_name, value, "expected a non-empty string")
    if len(value) > MAX_ID_CHARS:
        raise InvalidInput(field_name, value, f"expected at most {MAX_ID_CHARS} characters")
    return value


def check_number(value: Any, field_name: str, low: float | None = None, high: float | None = None) -> float:
    return finite_number(value, field_name, minimum=low, maximum=high)


def check_peer_status(value: Any, field_name: str = "status") -> str:
    """The stored word of a peer status: "live" or "dead" (a store from before 2026-12 says "alive")."""
    try:
        word = PeerStatus.read(value).value if isinstance(value, str) else None
    except ValueError:
        word = None
    if word not in PEER_STATUSES:
        raise InvalidInput(field_name, value, f"expected one of {PEER_STATUSES}")
    return word


def check_stage_status(value: Any, field_name: str = "status") -> str:
    if not isinstance(value, str) or value not in STAGE_STATUSES:
        raise InvalidInput(field_name, value, f"expected one of {STAGE_STATUSES}")
    return StageStatus(value).value


def check_json_object(value: Any, field_name: str) -> dict[str, Any]:
    """A detached copy of `value` if it survives JSON unchanged (string keys, finite numbers)."""
    reason = "expected a JSON object (string keys; strings, finite numbers, booleans, null, lists, objects)"
    if not isinstance(value, dict):
        raise InvalidInput(field_name, value, reason)
    try:
        copied = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(field_name, value, reason) from exc
    if copied != value:                    # int keys or tuples would silently change shape
        raise InvalidInput(field_name, value, reason)
    return copied


# ---- records ----------------------------------------------------------------------------

@dataclass(frozen=True)
class PeerRecord:
    """A peer as the coordinator last saw it. Validated on construction (raises InvalidInput)."""

    peer_id: str
    lat: float
    lon: float
    gpu: str | None
    free_vram_gb: float
    carbon_g_per_kwh: float | None = None
    carbon_source: str | None = None       # a CarbonSource value
    status: str = PeerStatus.LIVE.value    # "live" | "dead" (PEER_STATUSES)
    last_seen: float = 0.0                 # epoch seconds
    metrics: dict[str, Any] = field(default_factory=dict)   # latest snapshot; history is separate

    def __post_init__(self) -> None:
        check_id(self.peer_id, "peer.peer_id")
        if self.gpu is not None and not isinstance(self.gpu, str):
            raise InvalidInput("peer.gpu", self.gpu, "expected a string or None")
        if self.carbon_source is not None and self.carbon_source not in _CARBON_SOURCES:
            raise InvalidInput("peer.carbon_source", self.carbon_source, f"expected one of {_CARBON_SOURCES} or None")
        checked = {
            "lat": check_number(self.lat, "peer.lat", -90.0, 90.0),
            "lon": check_number(self.lon, "peer.lon", -180.0, 180.0),
            "free_vram_gb": check_number(self.free_vram_gb, "peer.free_vram_gb", 0.0),
            "carbon_g_per_kwh": None if self.carbon_g_per_kwh is None
            else check_number(self.carbon_g_per_kwh, "peer.carbon_g_per_kwh", 0.0),
            "carbon_source": None if self.carbon_source is None else CarbonSource(self.carbon_source).value,
            "status": check_peer_status(self.status, "peer.status"),
            "last_seen": check_number(self.last_seen, "peer.last_seen", 0.0),
            "metrics": check_json_object(self.metrics, "peer.metrics"),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @property
    def location_geojson(self) -> dict[str, Any]:
        """GeoJSON Point; note the [lon, lat] order (RFC 7946 section 3.1.1)."""
        return {"type": "Point", "coordinates": [self.lon, self.lat]}


@dataclass(frozen=True)
class MetricsSample:
    peer_id: str
    at: float                              # epoch seconds
    metrics: dict[str, Any]


@dataclass(frozen=True)
class DeploymentRecord:
    deployment_id: str
    plan: dict[str, Any]                   # engine.plan schema (Plan.to_dict form)
    stage_status: dict[str, str]           # peer_id -> status, e.g. "pending", "ready", "failed"
    created_at: float                      # epoch seconds
    updated_at: float
    active: bool

    def to_plan(self) -> Plan:
        return Plan.from_dict(self.plan)


# ---- the interface ----------------------------------------------------------------------

class Store(ABC):
    """Peers, their metrics history and deployments. Thread-safe: one lock serialises calls."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._closed = False

    # -- peers --
    def upsert_peer(self, rec: PeerRecord) -> None:
        """Insert or replace the peer with `rec.peer_id`."""
        if not isinstance(rec, PeerRecord):
            raise InvalidInput("peer", rec, "expected a PeerRecord")
        with self._open():
            self._put_peer(rec)

    def get_peer(self, peer_id: str) -> PeerRecord | None:
        check_id(peer_id, "peer_id")
        with self._open():
            return self._get_peer(peer_id)

    def list_peers(self, status: str | None = None) -> list[PeerRecord]:
        """All peers (or those with `status`), sorted by peer_id."""
        if status is not None:
            status = check_peer_status(status)
        with self._open():
            return self._list_peers(status)

    def mark_peer(self, peer_id: str, status: str) -> None:
        """Set a known peer's status; an unknown peer_id raises InvalidInput."""
        check_id(peer_id, "peer_id")
        status = check_peer_status(status)
        with self._open():
            if not self._set_peer_status(peer_id, status):
                raise InvalidInput("peer_id", peer_id, "no such peer")

    # -- metrics history (kept METRICS_RETENTION_S) --
    def record_metrics(self, peer_id: str, at: float, metrics: dict[str, Any]) -> None:
        """Append one sample; the peer need not be registered yet (heartbeats may race upserts)."""
        sample = MetricsSample(check_id(peer_id, "peer_id"), check_number(at, "at", 0.0),
                               check_json_object(metrics, "metrics"))
        with self._open():
            self._insert_metrics(sample, time.time() - METRICS_RETENTION_S)

    def metrics_history(self, peer_id: str, since: float | None = None) -> list[MetricsSample]:
        """Samples of `peer_id` at or after `since` and within the last 24 h, oldest first."""
        check_id(peer_id, "peer_id")
        expire_before = time.time() - METRICS_RETENTION_S
        cutoff = expire_before if since is None else max(expire_before, check_number(since, "since"))
        with self._open():
            return self._metrics_since(peer_id, cutoff, expire_before)

    # -- deployments --
    def save_deployment(self, plan: dict[str, Any]) -> str:
        """Store a feasible plan as the active deployment (others deactivated); returns its id."""
        parsed = Plan.from_dict(plan)
        if not parsed.feasible:
            raise InvalidInput("plan.feasible", False, "only a feasible plan can be deployed")
        with self._open():
            # Strictly after the current one even if the clock stalled or stepped back, so
            # "newest created_at" always means "saved last" (current_deployment relies on it).
            current = self._current_deployment()
            now = time.time() if current is None else max(time.time(), current.created_at + 1e-3)
            rec = DeploymentRecord(
                deployment_id=uuid.uuid4().hex, plan=parsed.to_dict(),
                stage_status={s.peer_id: StageStatus.PENDING.value for s in parsed.stages},
                created_at=now, updated_at=now, active=True,
            )
            self._insert_deployment(rec)
        return rec.deployment_id

    def get_deployment(self, deployment_id: str) -> DeploymentRecord | None:
        check_id(deployment_id, "deployment_id")
        with self._open():
            return self._get_deployment(deployment_id)

    def current_deployment(self) -> DeploymentRecord | None:
        """The active deployment: the newest by (created_at, deployment_id) if several are flagged."""
        with self._open():
            return self._current_deployment()

    def update_stage_status(self, deployment_id: str, peer_id: str, status: str) -> None:
        """Set the status of `peer_id`'s stage; the peer must be a stage of that deployment."""
        check_id(deployment_id, "deployment_id")
        check_id(peer_id, "peer_id")
        status = check_stage_status(status)
        with self._open():
            rec = self._get_deployment(deployment_id)
            if rec is None:
                raise InvalidInput("deployment_id", deployment_id, "no such deployment")
            if peer_id not in rec.stage_status:
                raise InvalidInput("peer_id", peer_id, f"not a stage of deployment {deployment_id}")
            self._put_stage_status(deployment_id, {**rec.stage_status, peer_id: status}, time.time())

    # -- lifecycle --
    def close(self) -> None:
        """Release the backend; idempotent. Later calls raise StoreClosed."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _open(self) -> Iterator[None]:
        """Hold the lock for one call; refuse a closed store."""
        with self._lock:
            if self._closed:
                raise StoreClosed(f"{type(self).__name__} is closed")
            yield

    # -- backend primitives: inputs are already validated; called with the lock held --
    @abstractmethod
    def _put_peer(self, rec: PeerRecord) -> None: ...

    @abstractmethod
    def _get_peer(self, peer_id: str) -> PeerRecord | None: ...

    @abstractmethod
    def _list_peers(self, status: str | None) -> list[PeerRecord]: ...

    @abstractmethod
    def _set_peer_status(self, peer_id: str, status: str) -> bool:
        """False when no such peer."""

    @abstractmethod
    def _insert_metrics(self, sample: MetricsSample, expire_before: float) -> None: ...

    @abstractmethod
    def _metrics_since(self, peer_id: str, since: float, expire_before: float) -> list[MetricsSample]:
        """Samples at or after `since`, oldest first; samples before `expire_before` may be deleted."""

    @abstractmethod
    def _insert_deployment(self, rec: DeploymentRecord) -> None:
        """Insert `rec` (active; newer than any stored) and deactivate the older ones."""

    @abstractmethod
    def _get_deployment(self, deployment_id: str) -> DeploymentRecord | None: ...

    @abstractmethod
    def _current_deployment(self) -> DeploymentRecord | None: ...

    @abstractmethod
    def _put_stage_status(self, deployment_id: str, stage_status: dict[str, str], updated_at: float) -> None: ...

    @abstractmethod
    def _close(self) -> None: ...
