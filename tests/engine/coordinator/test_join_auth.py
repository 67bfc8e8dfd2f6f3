"""The join handshake: a peer id belongs to the runner key that first joined with it, a recorded join
cannot be replayed, the join secret never crosses the wire, and a runner joining by a TCP ticket
refuses a listener that cannot prove the ticket's coordinator key. Loopback TCP, raw frames."""

from __future__ import annotations

import asyncio
import os
import stat

import pytest

from engine.coordinator.embedded import EmbeddedCoordinator
from engine.errors import InvalidInput
from engine.protocol.auth import (
    NotTheCoordinator,
    PeerKeys,
    SigningKey,
    coordinator_handshake,
    join_proof,
    join_transcript,
    new_nonce,
    runner_handshake,
    verify,
)
from engine.protocol.messages import PROTOCOL_VERSION
from engine.protocol.ticket import Ticket, decode_ticket
from engine.transport.tcp_channel import TcpNode, tcp_connect
from tests.conftest import poll
from tests.engine.coordinator.test_messages import join
from tests.engine.coordinator.test_security import HEARTBEAT, RawClient, peer, secret_of

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory):
    folder = tmp_path_factory.mktemp("join-auth")
    with EmbeddedCoordinator(f"sqlite:{folder}/prismn.sqlite3", transport="tcp", bind_host="127.0.0.1") as c:
        yield c


def test_a_holder_of_the_secret_cannot_take_over_another_runners_peer_id(coordinator):
    async def scenario():
        victim = await RawClient.open(coordinator.ticket)
        assert (await victim.join(secret_of(coordinator), "victim", key=SigningKey.generate()))["type"] == "welcome"
        forger = await RawClient.open(coordinator.ticket)
        reply = await forger.join(secret_of(coordinator), "victim", key=SigningKey.generate(),
                                  free_vram_gb=999_999.0, total_vram_gb=999_999.0, lat=-33.9, lon=151.2)
        assert reply["type"] == "refused" and "belongs to another runner" in reply["reason"]
        assert await forger.recv() == {}                                  # and hung up on
        # The real runner's link was not replaced: its heartbeats still count.
        await victim.send({**HEARTBEAT, "free_vram_gb": 6.25})
        await asyncio.to_thread(poll, lambda: peer(coordinator, "victim")["free_vram_gb"] == 6.25, 10,
                                "the victim's own beat")
        record = peer(coordinator, "victim")
        assert record["status"] == "live" and record["lat"] == 48.85 and record["total_vram_gb"] == 24.0
        victim.close()
    asyncio.run(scenario())


def test_the_same_runner_key_rejoins_under_its_id(coordinator):
    key = SigningKey.generate()

    async def scenario():
        for _ in range(2):
            client = await RawClient.open(coordinator.ticket)
            assert (await client.join(secret_of(coordinator), "comes-back", key=key))["type"] == "welcome"
            client.close()
    asyncio.run(scenario())


def test_a_recorded_join_cannot_be_replayed(coordinator):
    async def scenario():
        key = SigningKey.generate()
        first = await RawClient.open(coordinator.ticket)
        nonce = new_nonce()
        await first.send({"type": "join_hello", "protocol": PROTOCOL_VERSION, "nonce": nonce})
        challenge = await first.recv()
        transcript = join_transcript(nonce, challenge["nonce"], "replayed", key.public_hex)
        recorded = join(peer_id="replayed", key=key.public_hex, proof=join_proof(secret_of(coordinator), transcript),
                        signature=key.sign(transcript))
        await first.send(recorded)
        assert (await first.recv())["type"] == "welcome"
        first.close()
        # An eavesdropper replays both frames on a new connection: the coordinator's nonce is new.
        replay = await RawClient.open(coordinator.ticket)
        await replay.send({"type": "join_hello", "protocol": PROTOCOL_VERSION, "nonce": nonce})
        assert (await replay.recv())["nonce"] != challenge["nonce"]
        await replay.send(recorded)
        assert await replay.recv() == {"type": "refused", "reason": "wrong join secret", "payload_bytes": 0}
    asyncio.run(scenario())


def test_a_protocol_1_join_with_the_secret_in_clear_is_refused(coordinator):
    async def scenario():
        client = await RawClient.open(coordinator.ticket)
        await client.send({**join(peer_id="old-runner", protocol=1), "secret": secret_of(coordinator)})
        reply = await client.recv()
        assert reply["type"] == "refused" and "join_hello" in reply["reason"]
    asyncio.run(scenario())
    assert peer(coordinator, "old-runner") is None


class Recorder:
    """A TCP listener that records every frame a runner sends it and plays a coordinator's part."""

    def __init__(self, key: SigningKey, secret: str) -> None:
        self.key, self.secret = key, secret
        self.frames: list[dict] = []

    async def serve(self, node: TcpNode) -> None:
        channel = await node.accept()
        real_recv = channel.recv

        async def recording_recv():
            header, payload = await real_recv()
            self.frames.append(header)
            return header, payload
        channel.recv = recording_recv
        try:
            await coordinator_handshake(channel, self.secret, self.key, PeerKeys(), 5.0)
            await channel.send({"type": "welcome", "peer_id": "p", "heartbeat_s": 1.0})
        except Exception:
            pass
        await channel.close()


@pytest.mark.parametrize("impostor", [False, True])
def test_a_runner_checks_the_coordinator_key_on_a_tcp_ticket_and_never_sends_the_secret(impostor):
    """The impostor holds the join secret (as every runner does) but not the coordinator's key."""
    async def scenario():
        coordinator_key, other_key = SigningKey.generate(), SigningKey.generate()
        secret = "the-join-secret-0123456789"
        recorder = Recorder(other_key if impostor else coordinator_key, secret)
        node = await TcpNode.start("127.0.0.1:0")
        serving = asyncio.ensure_future(recorder.serve(node))
        ticket = decode_ticket(Ticket(node.address, secret, coordinator_key.public_hex).encode())
        channel = await tcp_connect(node.address)
        message = {"type": "join", "protocol": PROTOCOL_VERSION, **{k: v for k, v in join().items()
                                                                   if k not in ("type", "protocol", "key", "proof",
                                                                                "signature")}}
        try:
            if impostor:
                with pytest.raises(NotTheCoordinator):
                    await runner_handshake(channel, ticket, SigningKey.generate(), message, 5.0)
            else:
                reply = await runner_handshake(channel, ticket, SigningKey.generate(), message, 5.0)
                assert reply["type"] == "welcome"
        finally:
            await channel.close()
            await asyncio.wait_for(serving, 5.0)
            await node.close()
        kinds = [frame["type"] for frame in recorder.frames]
        assert kinds == (["join_hello"] if impostor else ["join_hello", "join"])   # no proof to an impostor
        assert secret not in repr(recorder.frames)
    asyncio.run(scenario())


def test_a_tcp_ticket_without_the_coordinator_key_is_refused():
    with pytest.raises(InvalidInput) as info:
        decode_ticket(Ticket("127.0.0.1:4000", "s3cret").encode())
    assert info.value.field == "ticket.key"
    with pytest.raises(InvalidInput, match="ticket.key"):
        decode_ticket(Ticket("127.0.0.1:4000", "s3cret", "zz" * 32).encode())


def test_signatures_verify_only_for_their_key_and_message():
    key = SigningKey.generate()
    signature = key.sign(b"hello")
    assert verify(key.public_hex, b"hello", signature)
    assert not verify(key.public_hex, b"hellO", signature)
    assert not verify(SigningKey.generate().public_hex, b"hello", signature)
    assert not verify(key.public_hex, b"hello", "00" * 64) and not verify("nothex", b"hello", signature)


def test_bindings_survive_a_restart_owner_only_and_keys_are_kept_by_fixed_id_runners(tmp_path):
    path = tmp_path / "state" / "peer_keys.jsonl"
    keys = PeerKeys(path)
    assert keys.admit("paris", "ab" * 32) and keys.admit("paris", "ab" * 32)
    assert not keys.admit("paris", "cd" * 32)
    again = PeerKeys(path)
    assert not again.admit("paris", "cd" * 32) and again.admit("paris", "ab" * 32)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    key_file = tmp_path / "keys" / "paris.key"
    first = SigningKey.load_or_create(key_file)
    assert SigningKey.load_or_create(key_file).public_hex == first.public_hex
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(key_file.parent).st_mode) == 0o700


def test_absurd_memory_figures_are_capped_and_a_jumping_total_is_kept_and_flagged(coordinator):
    async def scenario():
        client = await RawClient.open(coordinator.ticket)
        reply = await client.join(secret_of(coordinator), "boaster", free_vram_gb=999_999.0, total_vram_gb=999_999.0)
        assert reply["type"] == "welcome"
        await asyncio.to_thread(poll, lambda: peer(coordinator, "boaster") is not None, 10, "the boaster to join")
        joined = peer(coordinator, "boaster")
        assert joined["total_vram_gb"] == joined["free_vram_gb"] == 288.0          # what one GPU can hold
        await client.send({**HEARTBEAT, "total_vram_gb": 80.0, "free_vram_gb": 80.0})
        await asyncio.to_thread(poll, lambda: peer(coordinator, "boaster")["free_vram_gb"] == 80.0, 10, "80 GB beaten")
        await client.send({**HEARTBEAT, "total_vram_gb": 900.0, "free_vram_gb": 900.0})     # grew 10x: flagged
        await client.send({**HEARTBEAT, "total_vram_gb": 24.0, "free_vram_gb": 7.5})
        await asyncio.to_thread(poll, lambda: peer(coordinator, "boaster")["free_vram_gb"] == 7.5, 10, "7.5 GB beaten")
        assert peer(coordinator, "boaster")["total_vram_gb"] == 288.0
        client.close()
    asyncio.run(scenario())
