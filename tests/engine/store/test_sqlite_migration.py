"""A SQLite store written before 2026-12 (schema 1: a live peer stored as "alive", and a CHECK that
refuses any other word) opens, reads its live peers as "live", and takes new writes."""

from __future__ import annotations

import json
import sqlite3

from engine.status import PeerStatus
from engine.store.sqlite import _SCHEMA, SqliteStore


def write_schema_1_store(path) -> None:
    old_schema = _SCHEMA.replace("('live', 'dead')", "('alive', 'dead')")
    assert old_schema != _SCHEMA
    with sqlite3.connect(path) as conn:
        conn.executescript(old_schema)
        conn.execute("PRAGMA user_version=1")
        for peer_id, status in (("paris", "alive"), ("rome", "dead")):
            conn.execute("INSERT INTO peers (peer_id, lat, lon, location_geojson, gpu, free_vram_gb, "
                         "carbon_g_per_kwh, carbon_source, status, last_seen, metrics_json) "
                         "VALUES (?, 48.9, 2.3, ?, 'L4', 22.0, 50.0, 'region', ?, 1.0, '{}')",
                         (peer_id, json.dumps({"type": "Point", "coordinates": [2.3, 48.9]}), status))


def test_a_schema_1_store_reads_alive_as_live_and_accepts_live(tmp_path):
    path = tmp_path / "old.sqlite3"
    write_schema_1_store(path)
    with SqliteStore(path) as store:
        assert {p.peer_id: p.status for p in store.list_peers()} == {"paris": "live", "rome": "dead"}
        assert store.get_peer("paris").free_vram_gb == 22.0
        store.mark_peer("rome", PeerStatus.LIVE)               # the old CHECK would refuse this word
        assert [p.peer_id for p in store.list_peers(status=PeerStatus.LIVE)] == ["paris", "rome"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert sorted(conn.execute("SELECT status FROM peers")) == [("live",), ("live",)]
