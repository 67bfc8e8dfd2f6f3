"""Runners without the secret are refused; malformed, oversized and unknown messages are rejected and
the coordinator keeps serving. Raw bytes over TCP, so the frames can be as broken as an attacker's."""

from __future__ import annotations

import asyncio
import json

import pytest

from engine.coordinator.embedded import EmbeddedCoordinator
from engine.coordinator.service import MAX_BAD_FRAMES
from engine.protocol.auth import SigningKey, join_proof, join_transcript, new_nonce
from engine.protocol.messages import MAX_HEADER_BYTES, MAX_TENSOR_BYTES, PROTOCOL_VERSION
from engine.protocol.ticket import decode_ticket
from engine.transport.base import HELLO
from engine.transport.frames import PREFIX, encode_frame
from engine.transport.tcp_channel import parse_host_port
from tests.conftest import poll
from tests.engine.coordinator.test_messages import join

pytestmark = pytest.mark.timeout(60)

HEARTBEAT = {"type": "heartbeat", "gpu": "RTX 4090", "total_vram_gb": 24.0, "free_vram_gb": 7.5,
             "utilization_pct": 10.0, "power_w": 100.0}


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory):
    folder = tmp_path_factory.mktemp("security")
    with EmbeddedCoordinator(f"sqlite:{folder}/prismn.sqlite3", transport="tcp", bind_host="127.0.0.1") as c:
        yield c


RUNNER_KEYS: dict[str, SigningKey] = {}


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, ticket: str) -> RawClient:
        host, port = parse_host_port(decode_ticket(ticket).address)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(HELLO)
        return cls(reader, writer)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, header: dict, payload: bytes = b"") -> None:
        await self.send_raw(encode_frame(header, payload))

    async def recv(self, timeout_s: float = 20.0) -> dict:
        """The next frame's header; {} when the coordinator closed the connection."""
        try:
            prefix = await asyncio.wait_for(self.reader.readexactly(PREFIX.size), timeout_s)
        except asyncio.IncompleteReadError:
            return {}
        header_bytes, payload_bytes = PREFIX.unpack(prefix)
        header = json.loads(await self.reader.readexactly(header_bytes))
        await self.reader.readexactly(payload_bytes)
        return header

    async def recv_until(self, kind: str) -> dict:
        while True:
            header = await self.recv()
            if not header or header["type"] == kind:
                return header

    async def join(self, secret: str, peer_id: str, key: SigningKey | None = None, **fields) -> dict:
        """The runner's side of the join handshake (engine.protocol.auth); the coordinator's answer."""
        key = key or RUNNER_KEYS.setdefault(peer_id, SigningKey.generate())    # each runner keeps its key
        nonce = new_nonce()
        await self.send({"type": "join_hello", "protocol": PROTOCOL_VERSION, "nonce": nonce})
        challenge = await self.recv()
        if challenge.get("type") != "challenge":
            return challenge
        transcript = join_transcript(nonce, challenge["nonce"], peer_id, key.public_hex)
        await self.send(join(peer_id=peer_id, key=key.public_hex, proof=join_proof(secret, transcript),
                             signature=key.sign(transcript), **fields))
        return await self.recv()

    def close(self) -> None:
        self.writer.close()


def secret_of(coordinator: EmbeddedCoordinator) -> str:
    return decode_ticket(coordinator.ticket).secret


def peer(coordinator: EmbeddedCoordinator, peer_id: str) -> dict | None:
    return next((p for p in coordinator.all_peers() if p["id"] == peer_id), None)


def test_a_wrong_secret_is_refused_and_the_peer_never_registered(coordinator):
    async def scenario():
        client = await RawClient.open(coordinator.ticket)
        reply = await client.join("guess", "mallory")
        assert reply == {"type": "refused", "reason": "wrong join secret", "payload_bytes": 0}
        assert await client.recv() == {}                        # and hung up on
    asyncio.run(scenario())
    assert peer(coordinator, "mallory") is None


def test_anything_but_a_join_first_is_refused(coordinator):
    async def scenario():
        client = await RawClient.open(coordinator.ticket)
        await client.send(HEARTBEAT)
        reply = await client.recv()
        assert reply["type"] == "refused" and "join" in reply["reason"]
    asyncio.run(scenario())


def test_a_stranger_cannot_make_the_coordinator_read_a_payload_before_joining(coordinator):
    async def scenario():
        client = await RawClient.open(coordinator.ticket)
        # A join-sized header announcing a 200 MiB payload: dropped on the prefix, nothing read or held
        # (it used to read on, then refuse only when the join timeout ran out).
        header = json.dumps({"type": "join_hello", "protocol": PROTOCOL_VERSION, "nonce": "00" * 32}).encode()
        await client.send_raw(PREFIX.pack(len(header), 200 * 2**20) + header)
        assert await client.recv() == {}
        other = await RawClient.open(coordinator.ticket)
        assert (await other.join(secret_of(coordinator), "after-stranger"))["type"] == "welcome"
        other.close()
    asyncio.run(scenario())
    assert peer(coordinator, "stranger") is None


def test_bad_messages_get_an_error_and_the_connection_keeps_serving(coordinator):
    async def scenario():
        client = await RawClient.open(coordinator.ticket)
        assert (await client.join(secret_of(coordinator), "eve"))["type"] == "welcome"
        bad_frames = [
            encode_frame({"type": "launch_missiles"}),                      # unknown type
            encode_frame({**HEARTBEAT, "free_vram_gb": -3.0}),              # out of range
            encode_frame({**HEARTBEAT, "lat": 1.0}),                        # unexpected field
            encode_frame(HEARTBEAT, b"\0" * 64),                            # payload where none belongs
            PREFIX.pack(9, 0) + b"{not json",                               # malformed JSON
            PREFIX.pack(20, 0) + b'{"payload_bytes": 0}',                   # no type
        ]
        for frame in bad_frames:
            await client.send_raw(frame)
            reply = await client.recv_until("error")
            assert reply["type"] == "error", frame[:40]
        await client.send(HEARTBEAT)
        await asyncio.to_thread(poll, lambda: peer(coordinator, "eve")["free_vram_gb"] == 7.5, 20, "eve's beat")
        assert peer(coordinator, "eve")["status"] == "live"
        client.close()
    asyncio.run(scenario())


@pytest.mark.parametrize("header_bytes, payload_bytes", [
    (MAX_HEADER_BYTES + 1, 0),            # over the coordinator's header limit (the transport allows 64 KiB)
    (2**31, 0),                           # a 2 GiB header
    (64, MAX_TENSOR_BYTES + 1),           # a payload over the tensor limit
])
def test_an_oversized_frame_drops_only_that_connection(coordinator, header_bytes, payload_bytes):
    async def scenario():
        client = await RawClient.open(coordinator.ticket)
        assert (await client.join(secret_of(coordinator), "hog"))["type"] == "welcome"
        await client.send_raw(PREFIX.pack(header_bytes, payload_bytes))
        assert await client.recv_until("never") == {}                       # connection dropped
        other = await RawClient.open(coordinator.ticket)
        assert (await other.join(secret_of(coordinator), "honest"))["type"] == "welcome"
        other.close()
    asyncio.run(scenario())
    poll(lambda: peer(coordinator, "hog")["status"] == "dead", 20, "the hog to be marked dead")


def test_a_flood_of_bad_frames_is_cut_off(coordinator):
    async def scenario():
        client = await RawClient.open(coordinator.ticket)
        assert (await client.join(secret_of(coordinator), "flooder"))["type"] == "welcome"
        for _ in range(MAX_BAD_FRAMES):
            await client.send({"type": "nonsense"})
        assert await client.recv_until("never") == {}
    asyncio.run(scenario())
