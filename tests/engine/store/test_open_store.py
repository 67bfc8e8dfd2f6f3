"""Choosing a backend from a spec string or the environment."""

from __future__ import annotations

import socket

import pytest

from engine.errors import InvalidInput
from engine.store import StoreUnavailable, open_store
from engine.store.mongo import MongoStore, redact_uri
from engine.store.sqlite import SqliteStore


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("MONGODB_URI", raising=False)
    monkeypatch.delenv("MONGODB_DB_NAME", raising=False)
    monkeypatch.setenv("PRISMN_HOME", str(tmp_path / "home"))


def test_no_spec_and_no_mongodb_uri_opens_the_default_sqlite_file(tmp_path) -> None:
    with open_store() as store:
        assert isinstance(store, SqliteStore)
        assert store.path == str(tmp_path / "home" / "prismn.sqlite3")
    assert (tmp_path / "home" / "prismn.sqlite3").is_file()


def test_no_spec_with_mongodb_uri_opens_mongodb(nx_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGODB_URI", nx_server)
    monkeypatch.setenv("MONGODB_DB_NAME", "prismn_env_test")
    with open_store() as store:
        assert isinstance(store, MongoStore)
        assert store.db_name == "prismn_env_test"


def test_the_database_defaults_to_the_uri_path_then_prismn(nx_server: str) -> None:
    with open_store(nx_server) as store:
        assert store.db_name == "prismn"
    with open_store(f"{nx_server}/from_uri") as store:
        assert store.db_name == "from_uri"


def test_sqlite_spec_opens_that_file(tmp_path) -> None:
    path = tmp_path / "deep" / "folder" / "s.sqlite3"
    with open_store(f"sqlite:{path}") as store:
        assert isinstance(store, SqliteStore) and store.path == str(path)
    assert path.is_file()


def test_sqlite_memory_spec_works() -> None:
    with open_store("sqlite::memory:") as store:
        assert store.list_peers() == []


@pytest.mark.parametrize("spec", ["", "sqlite:", "sqlite:   ", "prismn.sqlite3", "postgres://h/db", "mongodb:/h", 42])
def test_a_bad_spec_is_rejected_naming_it(spec: object) -> None:
    with pytest.raises(InvalidInput) as err:
        open_store(spec)  # type: ignore[arg-type]
    assert err.value.field == "store"
    assert err.value.value == spec


def test_a_rejected_spec_does_not_echo_its_password() -> None:
    with pytest.raises(InvalidInput) as err:
        open_store("postgres://admin:hunter2@db.example/prismn")
    assert "hunter2" not in str(err.value)
    assert redact_uri("mongodb://u:p4ss@h:1/db") == "mongodb://u:***@h:1/db"


def test_a_malformed_mongodb_uri_is_invalid_input() -> None:
    with pytest.raises(InvalidInput) as err:
        open_store("mongodb://")
    assert err.value.field == "store"


def test_an_unreachable_mongodb_is_store_unavailable() -> None:
    with socket.socket() as sock:                    # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StoreUnavailable, match=str(port)):
        MongoStore(f"mongodb://127.0.0.1:{port}", timeout_s=0.3)


def test_a_file_that_is_not_sqlite_is_store_unavailable(tmp_path) -> None:
    path = tmp_path / "not-a-db.sqlite3"
    path.write_bytes(b"definitely not SQLite " * 100)
    with pytest.raises(StoreUnavailable, match="not-a-db"):
        open_store(f"sqlite:{path}")


def test_sqlite_spec_expands_the_home_folder(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with open_store("sqlite:~/prismn/s.sqlite3") as store:
        assert store.path == str(tmp_path / "prismn" / "s.sqlite3")
    assert (tmp_path / "prismn" / "s.sqlite3").is_file()
