"""The SQLite store (peers, locations, plans) is readable by its owner only, and a MongoDB URI's
password never reaches a message, whatever characters it holds."""

from __future__ import annotations

import os
import stat

import pytest

from engine.errors import InvalidInput
from engine.store.mongo import MongoStore, redact_uri
from engine.store.sqlite import SqliteStore


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_store_files_and_a_new_folder_are_owner_only(tmp_path):
    path = tmp_path / "new" / "prismn.sqlite3"
    store = SqliteStore(path)
    store._conn.execute("CREATE TABLE IF NOT EXISTS t (x)")      # forces the WAL file into being
    store._conn.commit()
    assert mode(path.parent) == 0o700
    for name in ("prismn.sqlite3", "prismn.sqlite3-wal", "prismn.sqlite3-shm"):
        if (path.parent / name).exists():
            assert mode(path.parent / name) == 0o600, name
    assert (path.parent / "prismn.sqlite3-wal").exists()
    store.close()


def test_an_older_world_readable_store_is_tightened(tmp_path):
    path = tmp_path / "prismn.sqlite3"
    SqliteStore(path).close()
    os.chmod(path, 0o644)
    SqliteStore(path).close()
    assert mode(path) == 0o600


@pytest.mark.parametrize("uri, shown", [
    ("mongodb://u:p4ss@h:1/db", "mongodb://u:***@h:1/db"),
    ("mongodb://admin:pa/ss:w@rd@db.example:27017/prismn?authSource=admin",
     "mongodb://admin:***@db.example:27017/prismn?authSource=admin"),
    ("mongodb+srv://reader@cluster0.example/db", "mongodb+srv://reader@cluster0.example/db"),
    ("mongodb://h:27017", "mongodb://h:27017"),
])
def test_a_mongodb_password_is_redacted_whatever_it_holds(uri, shown):
    assert redact_uri(uri) == shown


def test_an_unusable_uri_error_does_not_quote_the_password():
    with pytest.raises(InvalidInput) as info:
        MongoStore("mongodb://admin:pa/ss@h:notaport/db", timeout_s=0.2)
    assert "pa/ss" not in str(info.value)
