"""Persistent state of a Prismn swarm: peers, their metrics history, deployments.

One interface, two backends: an embedded SQLite file (the default) and MongoDB (pymongo).

    from engine.store import open_store, PeerRecord

    store = open_store()                 # $MONGODB_URI if set, else <user data dir>/prismn.sqlite3
    store = open_store("sqlite:/path/prismn.sqlite3")   # or "sqlite::memory:"
    store = open_store("mongodb://host:27017")          # db: $MONGODB_DB_NAME, URI's db, or "prismn"

    store.upsert_peer(PeerRecord("p1", lat=52.5, lon=13.4, gpu="RTX 4090", free_vram_gb=22.0,
                                 carbon_g_per_kwh=310.0, carbon_source="region", last_seen=time.time()))
    store.get_peer("p1") / store.list_peers(status="live") / store.mark_peer("p1", "dead")
    store.record_metrics("p1", at=time.time(), metrics={"tokens_per_s": 41.2})
    store.metrics_history("p1", since=None) -> [MetricsSample(peer_id, at, metrics)], oldest first
    dep_id = store.save_deployment(plan.to_dict())   # becomes the active one; others deactivated
    store.update_stage_status(dep_id, "p1", "ready")  # stages start as "pending"
    store.current_deployment() -> DeploymentRecord | None   (.to_plan() gives the engine.plan.Plan)
    store.close()                        # or use the store as a context manager

Guarantees (tests/engine/store/test_contract.py runs them against both backends):
- Every call is thread-safe (one lock per store), so a coordinator thread may share it.
- Bad input raises engine.errors.InvalidInput naming the field and value, before anything is
  written: a rejected call leaves stored data as it was. PeerRecord validates on construction.
- Metrics samples older than 24 h are never returned and are deleted (SQLite: on each metrics
  write and read; MongoDB: TTL index on `at`).
- Closing and reopening on the same file / database gives back the same peers and deployment.
- StoreUnavailable: the backend cannot be reached or opened. StoreClosed: used after close().
"""

from __future__ import annotations

import os

from engine.errors import InvalidInput
from engine.store.base import (
    METRICS_RETENTION_S,
    PEER_STATUSES,
    STAGE_STATUSES,
    DeploymentRecord,
    MetricsSample,
    PeerRecord,
    Store,
    StoreClosed,
    StoreUnavailable,
)

__all__ = [
    "METRICS_RETENTION_S", "PEER_STATUSES", "STAGE_STATUSES",
    "DeploymentRecord", "MetricsSample", "PeerRecord", "Store", "StoreClosed", "StoreUnavailable",
    "open_store",
]

_SQLITE_PREFIX = "sqlite:"
_MONGO_PREFIXES = ("mongodb://", "mongodb+srv://")


def open_store(spec: str | None = None) -> Store:
    """Open the store named by `spec`: "sqlite:PATH", "mongodb://..." / "mongodb+srv://...",
    or None for $MONGODB_URI when set, else the SQLite file in engine.paths.user_data_dir()."""
    if spec is None:
        spec = os.environ.get("MONGODB_URI") or None
        if spec is None:
            from engine.store.sqlite import SqliteStore
            return SqliteStore()
    if not isinstance(spec, str):
        raise InvalidInput("store", spec, "expected a string such as 'sqlite:PATH' or 'mongodb://HOST'")
    if spec.startswith(_SQLITE_PREFIX):
        path = spec[len(_SQLITE_PREFIX):]
        if not path.strip():
            raise InvalidInput("store", spec, "expected a file path after 'sqlite:'")
        from engine.store.sqlite import SqliteStore
        return SqliteStore(path)
    if spec.startswith(_MONGO_PREFIXES):
        from engine.store.mongo import MongoStore  # imports pymongo only when asked for
        return MongoStore(spec)
    from engine.store.mongo import redact_uri
    raise InvalidInput("store", redact_uri(spec),
                       "expected 'sqlite:PATH', 'mongodb://...' or 'mongodb+srv://...'")
