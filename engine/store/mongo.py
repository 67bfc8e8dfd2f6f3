"""MongoDB backend (pymongo): collections peers, metrics (TTL 24 h) and deployments.

Works against MongoDB and the nx-27017 wire-compatible server. Documents read back are
validated again through the records, since they crossed the network.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from typing import Any

import pymongo
from pymongo import ASCENDING, DESCENDING, MongoClient
from pymongo.errors import ConfigurationError, InvalidURI, OperationFailure, PyMongoError

from engine.errors import InvalidInput
from engine.store.base import (
    METRICS_RETENTION_S,
    DeploymentRecord,
    MetricsSample,
    PeerRecord,
    Store,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

DEFAULT_DB_NAME = "prismn"


def redact_uri(uri: str) -> str:
    """The URI without its password, fit for messages and logs. The user info ends at the LAST "@"
    before the options: a password may hold "/", ":" or "@" (seen printed in clear with "/")."""
    scheme, sep, rest = uri.partition("://")
    authority, query_sep, query = rest.partition("?")
    userinfo, at, hosts = authority.rpartition("@")
    if not sep or not at:
        return uri
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{hosts}{query_sep}{query}"


def _scrub(text: str, uri: str) -> str:
    """`text` (a driver's message) without the URI's password, should the driver quote it."""
    userinfo = uri.partition("://")[2].partition("?")[0].rpartition("@")[0]
    password = userinfo.partition(":")[2]
    return text.replace(password, "***") if password else text


class MongoStore(Store):
    """Database name: `db_name`, else $MONGODB_DB_NAME, else the URI's database, else "prismn"."""

    def __init__(self, uri: str, db_name: str | None = None, timeout_s: float = 5.0) -> None:
        super().__init__()
        self.uri = redact_uri(uri)
        timeout_ms = int(timeout_s * 1000)
        try:
            # tz_aware: BSON dates come back as UTC-aware datetimes, so .timestamp() is right.
            self._client: MongoClient = MongoClient(
                uri, tz_aware=True, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)
        except (InvalidURI, ConfigurationError, ValueError) as exc:
            raise InvalidInput("store", self.uri, f"not a usable MongoDB URI: {_scrub(str(exc), uri)}") from None
        try:
            default_db = self._client.get_default_database(default=DEFAULT_DB_NAME).name
        except ConfigurationError:
            default_db = DEFAULT_DB_NAME
        self.db_name = db_name or os.environ.get("MONGODB_DB_NAME") or default_db
        db = self._client[self.db_name]
        self._peers = db["peers"]
        self._metrics = db["metrics"]
        self._deployments = db["deployments"]
        try:
            self.geo_index = self._create_indexes()
        except PyMongoError as exc:
            self._client.close()
            raise StoreUnavailable(f"cannot use MongoDB store {self.uri} (db {self.db_name!r}): "
                                   f"{_scrub(str(exc), uri)}") from None

    def __repr__(self) -> str:
        return f"MongoStore({self.uri!r}, db_name={self.db_name!r})"

    def _create_indexes(self) -> bool:
        """Create indexes (idempotent); returns whether the 2dsphere index on peers exists."""
        self._peers.create_index([("peer_id", ASCENDING)], unique=True)
        self._peers.create_index([("status", ASCENDING)])
        self._peers.update_many({"status": "alive"}, {"$set": {"status": "live"}})  # the word before 2026-12
        # TTL on the BSON date `at`; `at_s` keeps the exact epoch seconds for queries.
        self._metrics.create_index([("at", ASCENDING)], expireAfterSeconds=METRICS_RETENTION_S)
        self._metrics.create_index([("peer_id", ASCENDING), ("at_s", ASCENDING)])
        self._deployments.create_index([("deployment_id", ASCENDING)], unique=True)
        self._deployments.create_index([("active", ASCENDING), ("created_at", DESCENDING)])
        try:
            self._peers.create_index([("location", pymongo.GEOSPHERE)])
            return True
        except OperationFailure as exc:    # some compatible servers lack geo indexes: still usable
            log.warning("MongoDB store: no 2dsphere index on peers.location (%s)", exc)
            return False

    # -- peers --
    def _put_peer(self, rec: PeerRecord) -> None:
        doc = {
            "peer_id": rec.peer_id, "lat": rec.lat, "lon": rec.lon, "location": rec.location_geojson,
            "gpu": rec.gpu, "free_vram_gb": rec.free_vram_gb, "carbon_g_per_kwh": rec.carbon_g_per_kwh,
            "carbon_source": rec.carbon_source, "status": rec.status, "last_seen": rec.last_seen,
            "metrics": rec.metrics,
        }
        self._peers.replace_one({"peer_id": rec.peer_id}, doc, upsert=True)

    def _get_peer(self, peer_id: str) -> PeerRecord | None:
        doc = self._peers.find_one({"peer_id": peer_id})
        return None if doc is None else _peer_from_doc(doc)

    def _list_peers(self, status: str | None) -> list[PeerRecord]:
        query = {} if status is None else {"status": status}
        return [_peer_from_doc(doc) for doc in self._peers.find(query).sort("peer_id", ASCENDING)]

    def _set_peer_status(self, peer_id: str, status: str) -> bool:
        return self._peers.update_one({"peer_id": peer_id}, {"$set": {"status": status}}).matched_count > 0

    # -- metrics: the TTL index expires old samples; queries also filter, since a real
    #    MongoDB's TTL monitor only runs about once a minute --
    def _insert_metrics(self, sample: MetricsSample, expire_before: float) -> None:
        self._metrics.insert_one({
            "peer_id": sample.peer_id, "at": datetime.fromtimestamp(sample.at, UTC),
            "at_s": sample.at, "metrics": sample.metrics,
        })

    def _metrics_since(self, peer_id: str, since: float, expire_before: float) -> list[MetricsSample]:
        docs = self._metrics.find({"peer_id": peer_id, "at_s": {"$gte": since}}).sort("at_s", ASCENDING)
        return [MetricsSample(doc["peer_id"], float(doc["at_s"]), dict(doc["metrics"])) for doc in docs]

    # -- deployments --
    def _insert_deployment(self, rec: DeploymentRecord) -> None:
        # No multi-document transaction here: insert first, then deactivate only the deployments
        # older than this one in (created_at, deployment_id) order. A crash in between, or a
        # concurrent save from another process, can leave an older one flagged active, but
        # `_current_deployment` sorts by the same order, so the newest is always the current one.
        self._deployments.insert_one({
            "deployment_id": rec.deployment_id, "plan": rec.plan,
            "stage_status": _stage_status_to_list(rec.stage_status),
            "created_at": rec.created_at, "updated_at": rec.updated_at, "active": True,
        })
        older = [{"created_at": {"$lt": rec.created_at}},
                 {"created_at": rec.created_at, "deployment_id": {"$lt": rec.deployment_id}}]
        self._deployments.update_many({"active": True, "$or": older}, {"$set": {"active": False}})

    def _get_deployment(self, deployment_id: str) -> DeploymentRecord | None:
        doc = self._deployments.find_one({"deployment_id": deployment_id})
        return None if doc is None else _deployment_from_doc(doc)

    def _current_deployment(self) -> DeploymentRecord | None:
        doc = self._deployments.find_one({"active": True},
                                         sort=[("created_at", DESCENDING), ("deployment_id", DESCENDING)])
        return None if doc is None else _deployment_from_doc(doc)

    def _put_stage_status(self, deployment_id: str, stage_status: dict[str, str], updated_at: float) -> None:
        self._deployments.update_one(
            {"deployment_id": deployment_id},
            {"$set": {"stage_status": _stage_status_to_list(stage_status), "updated_at": updated_at}})

    def _close(self) -> None:
        self._client.close()


# Stage status is a list of {peer_id, status}, not a sub-document keyed by peer id, because a
# peer id may contain "." or start with "$", which MongoDB update paths would misread.
def _stage_status_to_list(stage_status: dict[str, str]) -> list[dict[str, str]]:
    return [{"peer_id": peer_id, "status": status} for peer_id, status in stage_status.items()]


def _peer_from_doc(doc: dict[str, Any]) -> PeerRecord:
    return PeerRecord(
        peer_id=doc["peer_id"], lat=doc["lat"], lon=doc["lon"], gpu=doc.get("gpu"),
        free_vram_gb=doc["free_vram_gb"], carbon_g_per_kwh=doc.get("carbon_g_per_kwh"),
        carbon_source=doc.get("carbon_source"), status=doc["status"], last_seen=doc["last_seen"],
        metrics=dict(doc.get("metrics") or {}),
    )


def _deployment_from_doc(doc: dict[str, Any]) -> DeploymentRecord:
    return DeploymentRecord(
        deployment_id=doc["deployment_id"], plan=dict(doc["plan"]),
        stage_status={item["peer_id"]: item["status"] for item in doc["stage_status"]},
        created_at=float(doc["created_at"]), updated_at=float(doc["updated_at"]),
        active=bool(doc["active"]),        # some servers hand a $set boolean back as 0/1
    )
