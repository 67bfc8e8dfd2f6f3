"""The coordinator on a MongoDB store (a private nx-27017): peers and their metrics are stored, and a
restarted coordinator lists them again, dead until they rejoin."""

from __future__ import annotations

import asyncio

import pytest

from engine.coordinator.embedded import EmbeddedCoordinator
from engine.store import open_store
from tests.conftest import poll
from tests.engine.coordinator.test_security import HEARTBEAT, RawClient, secret_of

pytestmark = pytest.mark.timeout(60)


def test_peers_and_metrics_live_in_mongodb_and_survive_a_restart(nx_server, tmp_path, monkeypatch):
    monkeypatch.setenv("PRISMN_HOME", str(tmp_path))          # the identity file goes beside the store
    spec = f"{nx_server}/prismn_coordinator_test"

    with EmbeddedCoordinator(spec, transport="tcp", bind_host="127.0.0.1") as coordinator:
        async def join_and_beat() -> None:
            client = await RawClient.open(coordinator.ticket)
            assert (await client.join(secret_of(coordinator), "oslo-1"))["type"] == "welcome"
            # Beats reach the store in batches (the latest per peer, every STORE_EVERY_S): beat, wait
            # until it is stored, beat again (a fixed short sleep lost them on a busy box).
            with open_store(spec) as store:
                for stored in (1, 2):
                    await client.send(HEARTBEAT)
                    await asyncio.to_thread(poll, lambda n=stored: len(store.metrics_history("oslo-1")) >= n, 20,
                                            f"beat {stored} to be stored")
            client.close()
        asyncio.run(join_and_beat())
        ticket = coordinator.ticket
    with open_store(spec) as store:
        (peer,) = store.list_peers()
        assert (peer.peer_id, peer.free_vram_gb) == ("oslo-1", 7.5)
        assert len(store.metrics_history("oslo-1")) >= 2

    with EmbeddedCoordinator(spec, transport="tcp", bind_host="127.0.0.1") as restarted:
        assert restarted.ticket == ticket
        assert [(p["id"], p["status"]) for p in restarted.all_peers()] == [("oslo-1", "dead")]
        assert restarted.live_peers() == []
    assert (tmp_path / "coordinator_identity.json").exists()
