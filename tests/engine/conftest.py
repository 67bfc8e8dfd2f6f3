"""Fixtures for the engine's tests in more than one package: a private MongoDB-compatible server."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

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
