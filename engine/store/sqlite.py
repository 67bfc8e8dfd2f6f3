"""Embedded default backend: one SQLite file (WAL), one connection guarded by the store's lock."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from engine.paths import user_data_dir
from engine.store.base import (
    PEER_STATUSES,
    DeploymentRecord,
    MetricsSample,
    PeerRecord,
    Store,
    StoreUnavailable,
)

DEFAULT_FILENAME = "prismn.sqlite3"
SCHEMA_VERSION = 2                         # PRAGMA user_version; bump with a migration
# 1 -> 2: a live peer is stored as "live" (it was "alive"); the CHECK on peers.status names the new word.

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS peers (
    peer_id          TEXT PRIMARY KEY,
    lat              REAL NOT NULL,
    lon              REAL NOT NULL,
    location_geojson TEXT NOT NULL,        -- same GeoJSON Point as the MongoDB backend
    gpu              TEXT,
    free_vram_gb     REAL NOT NULL,
    carbon_g_per_kwh REAL,
    carbon_source    TEXT,
    status           TEXT NOT NULL CHECK (status IN {tuple(PEER_STATUSES)!r}),
    last_seen        REAL NOT NULL,
    metrics_json     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS metrics (
    id           INTEGER PRIMARY KEY,
    peer_id      TEXT NOT NULL,
    at           REAL NOT NULL,
    metrics_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_at ON metrics (at);
CREATE INDEX IF NOT EXISTS metrics_peer_at ON metrics (peer_id, at);
CREATE TABLE IF NOT EXISTS deployments (
    seq               INTEGER PRIMARY KEY, -- insertion order breaks created_at ties
    deployment_id     TEXT NOT NULL UNIQUE,
    plan_json         TEXT NOT NULL,
    stage_status_json TEXT NOT NULL,
    created_at        REAL NOT NULL,
    updated_at        REAL NOT NULL,
    active            INTEGER NOT NULL CHECK (active IN (0, 1))
);
CREATE INDEX IF NOT EXISTS deployments_active ON deployments (active, created_at);
"""

_PEER_COLUMNS = ("peer_id, lat, lon, gpu, free_vram_gb, carbon_g_per_kwh, carbon_source, status, "
                 "last_seen, metrics_json")
_DEPLOYMENT_COLUMNS = "deployment_id, plan_json, stage_status_json, created_at, updated_at, active"


def default_path() -> Path:
    return user_data_dir() / DEFAULT_FILENAME


def _owner_only(path: Path) -> None:
    """Create the store file (and a missing folder) readable by its owner only: peers, locations and
    plans are nobody else's business. SQLite gives its -wal/-shm files the database file's mode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for existing in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if existing.exists() and existing.stat().st_mode & 0o077:
                existing.chmod(0o600)           # a store from before this rule
        except OSError:
            pass


class SqliteStore(Store):
    """`path` is a file (created with its folder) or ":memory:"; None means the per-user default."""

    def __init__(self, path: str | Path | None = None) -> None:
        super().__init__()
        self.path = str(default_path() if path is None else path)
        if self.path != ":memory:":
            self.path = str(Path(self.path).expanduser())
        try:
            if self.path != ":memory:":
                _owner_only(Path(self.path))
            # The store's lock serialises every use, so sharing one connection across threads is safe.
            self._conn = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")   # durable enough with WAL, much faster
            if self._conn.execute("PRAGMA user_version").fetchone()[0] == 1:
                self._migrate_from_1()
            with self._conn:
                self._conn.executescript(_SCHEMA)
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path!r}: {exc}") from exc

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    def _migrate_from_1(self) -> None:
        """Schema 1 said "alive" and its CHECK refuses "live"; SQLite cannot alter a CHECK, so the peers
        table is rebuilt with the word mapped, in one transaction."""
        selected = _PEER_COLUMNS.replace("status", "CASE status WHEN 'alive' THEN 'live' ELSE status END")
        self._conn.executescript(f"""
            BEGIN;
            ALTER TABLE peers RENAME TO peers_schema_1;
            {_SCHEMA}
            INSERT INTO peers ({_PEER_COLUMNS}, location_geojson)
                SELECT {selected}, location_geojson FROM peers_schema_1;
            DROP TABLE peers_schema_1;
            PRAGMA user_version = 2;
            COMMIT;
        """)

    # -- peers --
    def _put_peer(self, rec: PeerRecord) -> None:
        with self._conn:
            self._conn.execute(
                f"INSERT OR REPLACE INTO peers ({_PEER_COLUMNS}, location_geojson) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (rec.peer_id, rec.lat, rec.lon, rec.gpu, rec.free_vram_gb, rec.carbon_g_per_kwh,
                 rec.carbon_source, rec.status, rec.last_seen, json.dumps(rec.metrics),
                 json.dumps(rec.location_geojson)),
            )

    def _get_peer(self, peer_id: str) -> PeerRecord | None:
        row = self._conn.execute(f"SELECT {_PEER_COLUMNS} FROM peers WHERE peer_id = ?", (peer_id,)).fetchone()
        return None if row is None else _peer_from_row(row)

    def _list_peers(self, status: str | None) -> list[PeerRecord]:
        if status is None:
            rows = self._conn.execute(f"SELECT {_PEER_COLUMNS} FROM peers ORDER BY peer_id")
        else:
            rows = self._conn.execute(
                f"SELECT {_PEER_COLUMNS} FROM peers WHERE status = ? ORDER BY peer_id", (status,))
        return [_peer_from_row(row) for row in rows]

    def _set_peer_status(self, peer_id: str, status: str) -> bool:
        with self._conn:
            cur = self._conn.execute("UPDATE peers SET status = ? WHERE peer_id = ?", (status, peer_id))
        return cur.rowcount > 0

    # -- metrics: expired rows are deleted on every write and read --
    def _insert_metrics(self, sample: MetricsSample, expire_before: float) -> None:
        with self._conn:
            self._conn.execute("INSERT INTO metrics (peer_id, at, metrics_json) VALUES (?, ?, ?)",
                               (sample.peer_id, sample.at, json.dumps(sample.metrics)))
            self._conn.execute("DELETE FROM metrics WHERE at < ?", (expire_before,))

    def _metrics_since(self, peer_id: str, since: float, expire_before: float) -> list[MetricsSample]:
        with self._conn:
            self._conn.execute("DELETE FROM metrics WHERE at < ?", (expire_before,))
        rows = self._conn.execute(
            "SELECT at, metrics_json FROM metrics WHERE peer_id = ? AND at >= ? ORDER BY at, id",
            (peer_id, since))
        return [MetricsSample(peer_id, at, json.loads(text)) for at, text in rows]

    # -- deployments --
    def _insert_deployment(self, rec: DeploymentRecord) -> None:
        with self._conn:                   # one transaction: never zero or two active after a crash
            self._conn.execute("UPDATE deployments SET active = 0 WHERE active = 1")
            self._conn.execute(
                f"INSERT INTO deployments ({_DEPLOYMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, 1)",
                (rec.deployment_id, json.dumps(rec.plan), json.dumps(rec.stage_status),
                 rec.created_at, rec.updated_at),
            )

    def _get_deployment(self, deployment_id: str) -> DeploymentRecord | None:
        row = self._conn.execute(f"SELECT {_DEPLOYMENT_COLUMNS} FROM deployments WHERE deployment_id = ?",
                                 (deployment_id,)).fetchone()
        return None if row is None else _deployment_from_row(row)

    def _current_deployment(self) -> DeploymentRecord | None:
        row = self._conn.execute(f"SELECT {_DEPLOYMENT_COLUMNS} FROM deployments WHERE active = 1 "
                                 "ORDER BY created_at DESC, seq DESC LIMIT 1").fetchone()
        return None if row is None else _deployment_from_row(row)

    def _put_stage_status(self, deployment_id: str, stage_status: dict[str, str], updated_at: float) -> None:
        with self._conn:
            self._conn.execute(
                "UPDATE deployments SET stage_status_json = ?, updated_at = ? WHERE deployment_id = ?",
                (json.dumps(stage_status), updated_at, deployment_id))

    def _close(self) -> None:
        self._conn.close()


def _peer_from_row(row: tuple[Any, ...]) -> PeerRecord:
    (peer_id, lat, lon, gpu, free_vram_gb, carbon, carbon_source, status, last_seen, metrics_json) = row
    return PeerRecord(peer_id=peer_id, lat=lat, lon=lon, gpu=gpu, free_vram_gb=free_vram_gb,
                      carbon_g_per_kwh=carbon, carbon_source=carbon_source, status=status,
                      last_seen=last_seen, metrics=json.loads(metrics_json))


def _deployment_from_row(row: tuple[Any, ...]) -> DeploymentRecord:
    deployment_id, plan_json, stage_status_json, created_at, updated_at, active = row
    return DeploymentRecord(deployment_id=deployment_id, plan=json.loads(plan_json),
                            stage_status=json.loads(stage_status_json), created_at=created_at,
                            updated_at=updated_at, active=bool(active))
