"""Backends for the store contract suite: SQLite in tmp_path, MongoDB on a private nx-27017 server."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from engine.store import Store, open_store
from tests.conftest import poll

_NX_MAIN = "import sys; from nx_27017.nx_27017 import main; sys.exit(main())"
_NX_READY_TIMEOUT_S = 20.0


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def nx_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private nx-27017 (MongoDB wire protocol over SQLite) on a free loopback port; yields its URI."""
    root = tmp_path_factory.mktemp("nx27017")
    port = _free_loopback_port()
    # --pid-file and --log-file default to fixed paths in /tmp; keep ours private.
    cmd = [sys.executable, "-c", _NX_MAIN, "--host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(root / "data"), "--pid-file", str(root / "nx.pid"),
           "--log-file", str(root / "nx.log")]
    out = (root / "stdout.txt").open("wb")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    uri = f"mongodb://127.0.0.1:{port}"
    try:
        _wait_ready(proc, uri, root)
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        out.close()


def _wait_ready(proc: subprocess.Popen, uri: str, root: Path) -> None:
    def ready() -> bool:
        if proc.poll() is not None:
            log = (root / "stdout.txt").read_text(errors="replace")
            pytest.fail(f"nx-27017 exited with {proc.returncode}:\n{log}")
        client: MongoClient = MongoClient(uri, serverSelectionTimeoutMS=200, connectTimeoutMS=200)
        try:
            client.admin.command("ping")
            return True
        except PyMongoError:
            return False
        finally:
            client.close()
    poll(ready, _NX_READY_TIMEOUT_S, f"nx-27017 to answer at {uri}", every_s=0.1)


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
