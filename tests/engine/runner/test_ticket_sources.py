"""A runner takes its ticket from --ticket, --ticket-file (read with a bound) or $PRISMN_TICKET; a
bad source is one clear error naming the flag."""

from __future__ import annotations

import pytest

from engine.errors import InvalidInput
from engine.protocol.ticket import Ticket
from engine.runner.agent import parse_args

TICKET = Ticket("127.0.0.1:4000", "s3cret-s3cret", "ab" * 32)
ARGS = ["--lat", "48.85", "--lon", "2.35", "--id", "paris"]


def test_the_ticket_comes_from_a_file_or_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PRISMN_HOME", str(tmp_path))
    path = tmp_path / "ticket"
    path.write_text(TICKET.encode() + "\n")
    assert parse_args([*ARGS, "--ticket-file", str(path)]).ticket == TICKET
    monkeypatch.setenv("PRISMN_TICKET", TICKET.encode())
    assert parse_args(ARGS).ticket == TICKET


@pytest.mark.parametrize("source", ["/dev/zero", "missing", "none"])
def test_a_bad_ticket_source_is_one_error_naming_the_flag(tmp_path, monkeypatch, source):
    monkeypatch.delenv("PRISMN_TICKET", raising=False)
    extra = [] if source == "none" else ["--ticket-file", str(tmp_path / source) if source == "missing" else source]
    with pytest.raises(InvalidInput) as info:
        parse_args([*ARGS, *extra])
    assert info.value.field == ("--ticket" if source == "none" else "--ticket-file")
