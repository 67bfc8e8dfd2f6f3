"""Backends for the store contract suite: SQLite in tmp_path, MongoDB on the private nx-27017 server
(the `nx_server` fixture of tests/engine/conftest.py)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pymongo import MongoClient

from engine.store import Store, open_store


@dataclass
class Backend:
    """How to (re)open one store, and a raw look at its metrics rows behind the store's back."""

    name: str
    open: Callable[[], Store]
    raw_metrics_count: Callable[[str], int]


def _sqlite_backend(tmp_path: Path) -> Backend:
    path = tmp_path / "prismn.sqlite3"

    def raw_metrics_count(peer_id: str) -> int:
        with sqlite3.connect(path) as conn:
            return conn.execute("SELECT COUNT(*) FROM metrics WHERE peer_id = ?", (peer_id,)).fetchone()[0]

    return Backend("sqlite", lambda: open_store(f"sqlite:{path}"), raw_metrics_count)


def _mongo_backend(uri: str, monkeypatch: pytest.MonkeyPatch) -> Backend:
    db_name = f"prismn_test_{uuid.uuid4().hex[:12]}"     # a fresh database per test
    monkeypatch.setenv("MONGODB_DB_NAME", db_name)

    def raw_metrics_count(peer_id: str) -> int:
        with MongoClient(uri) as client:
            return client[db_name]["metrics"].count_documents({"peer_id": peer_id})

    return Backend("mongodb", lambda: open_store(uri), raw_metrics_count)


@pytest.fixture(params=["sqlite", "mongodb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    if request.param == "sqlite":
        return _sqlite_backend(tmp_path)
    return _mongo_backend(request.getfixturevalue("nx_server"), monkeypatch)


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    opened = backend.open()
    yield opened
    opened.close()
