"""Peers are dead after three missed beats; a ticket round-trips and its identity persists."""

from __future__ import annotations

import os
import stat

import pytest

from engine.carbon_values import CarbonSource
from engine.coordinator.registry import DEAD, LIVE, Registry
from engine.errors import InvalidInput
from engine.protocol.ticket import Ticket, decode_ticket, identity_dir, load_identity
from tests.engine.coordinator.test_messages import join

HEARTBEAT = {"gpu": "RTX 4090", "total_vram_gb": 24.0, "free_vram_gb": 20.0, "utilization_pct": 50.0,
             "power_w": 300.0}


def test_a_peer_that_misses_three_beats_is_dead_and_only_then():
    registry = Registry(heartbeat_s=1.0)
    registry.join(join(), (55.0, CarbonSource.COUNTRY), now_s=100.0)
    registry.beat("paris-1", HEARTBEAT, now_s=101.0)
    assert registry.expire(now_s=103.9) == []
    assert registry.get("paris-1").status == LIVE
    assert registry.expire(now_s=104.1) == ["paris-1"]
    assert registry.get("paris-1").status == DEAD
    assert registry.expire(now_s=110.0) == []          # dies once
    assert registry.beat("paris-1", HEARTBEAT, now_s=111.0) is None   # must rejoin


def test_beats_refresh_metrics_and_live_peers_become_planning_peers():
    registry = Registry(heartbeat_s=1.0)
    registry.join(join(), (55.0, CarbonSource.COUNTRY), now_s=0.0)
    registry.beat("paris-1", HEARTBEAT, now_s=1.0)
    peer = registry.alive()[0].as_peer()
    assert (peer.id, peer.free_vram_gb, peer.carbon_g_per_kwh, peer.carbon_source) == \
        ("paris-1", 20.0, 55.0, CarbonSource.COUNTRY)
    assert registry.alive()[0].summary()["utilization"] == 50.0


def test_a_ticket_round_trips_and_garbage_is_refused():
    ticket = Ticket(address="endpointabc", secret="xyz")
    assert decode_ticket("  " + ticket.encode() + "\n") == ticket
    for bad in ("", "prismn1.", "prismn1.!!!!", "hello", "prismn1." + "A" * 9000):
        with pytest.raises(InvalidInput, match="ticket"):
            decode_ticket(bad)


def test_the_identity_is_created_once_owner_only_and_reused(tmp_path):
    folder = identity_dir(f"sqlite:{tmp_path}/x/prismn.sqlite3")
    assert folder == tmp_path / "x"
    first = load_identity(folder)
    assert load_identity(folder) == first
    assert len(bytes.fromhex(first.secret_key_hex)) == 32 and len(first.join_secret) >= 24
    mode = stat.S_IMODE(os.stat(folder / "coordinator_identity.json").st_mode)
    assert mode == 0o600
