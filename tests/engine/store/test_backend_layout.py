"""What each backend leaves on disk / in the database, for tools that read it directly."""

from __future__ import annotations

import json
import sqlite3
import time

from pymongo import MongoClient

from engine.store import METRICS_RETENTION_S, PeerRecord, open_store
from engine.store.mongo import MongoStore

PEER = PeerRecord("p1", lat=-33.87, lon=151.21, gpu="A100", free_vram_gb=40, last_seen=time.time())


def test_sqlite_uses_wal_and_keeps_the_location_as_geojson(tmp_path) -> None:
    path = tmp_path / "s.sqlite3"
    with open_store(f"sqlite:{path}") as store:
        store.upsert_peer(PEER)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        geojson = json.loads(conn.execute("SELECT location_geojson FROM peers").fetchone()[0])
    assert geojson == {"type": "Point", "coordinates": [151.21, -33.87]}


def test_mongodb_keeps_a_geojson_point_and_a_24_hour_ttl(nx_server: str) -> None:
    with MongoStore(nx_server, db_name="prismn_layout_test") as store:
        store.upsert_peer(PEER)
        assert store.geo_index                        # nx-27017 accepts 2dsphere indexes
    with MongoClient(nx_server) as client:
        db = client["prismn_layout_test"]
        assert db.peers.find_one({"peer_id": "p1"})["location"] == {"type": "Point", "coordinates": [151.21, -33.87]}
        ttl = [ix for ix in db.metrics.index_information().values() if "expireAfterSeconds" in ix]
        assert [(ix["key"], ix["expireAfterSeconds"]) for ix in ttl] == [([("at", 1)], METRICS_RETENTION_S)]


def test_sqlite_deletes_expired_rows_when_history_is_read(tmp_path) -> None:
    path = tmp_path / "s.sqlite3"
    with open_store(f"sqlite:{path}") as store:
        store.record_metrics("p1", time.time(), {"n": 1})
        with sqlite3.connect(path) as conn:              # a row written when it was still fresh
            conn.execute("INSERT INTO metrics (peer_id, at, metrics_json) VALUES ('p2', ?, '{}')",
                         (time.time() - METRICS_RETENTION_S - 1,))
        assert store.metrics_history("p2") == []
        assert [s.metrics for s in store.metrics_history("p1")] == [{"n": 1}]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT peer_id FROM metrics").fetchall() == [("p1",)]
