"""Both transports carry frames faithfully, survive bad frames, and keep serving after bad peers.

Each test runs the real transport on loopback (iroh offline: relays off, direct addresses).
Bad frames are written below the framing with the channel's byte-level `_write`, because the
public `send` refuses to build them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator

import pytest
import torch

from engine.errors import InvalidInput
from engine.transport import (
    Channel,
    ConnectionClosed,
    FrameError,
    FrameLimits,
    Node,
    frame_to_tensor,
    start_node,
    tensor_to_frame,
)
from engine.transport.frames import PREFIX
from tests.conftest import poll

pytestmark = pytest.mark.timeout(60)

TRANSPORTS = ["tcp", "iroh"]


def raw_frame(header: bytes | dict, payload: bytes = b"") -> bytes:
    header_json = header if isinstance(header, bytes) else json.dumps(header).encode()
    return PREFIX.pack(len(header_json), len(payload)) + header_json + payload


@contextlib.asynccontextmanager
async def nodes(transport: str, **server_options) -> AsyncIterator[tuple[Node, Node]]:
    async with await start_node(transport, **server_options) as server, await start_node(transport) as client:
        yield server, client


async def open_pair(server: Node, client: Node) -> tuple[Channel, Channel]:
    client_channel = await client.connect(server.address)
    server_channel = await asyncio.wait_for(server.accept(), 10)
    return client_channel, server_channel


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_frames_cross_in_both_directions(transport: str) -> None:
    async def scenario() -> None:
        async with nodes(transport) as (server, client):
            to_server, to_client = await open_pair(server, client)
            tensor = torch.randn(2, 7, 64).to(torch.bfloat16)
            await to_server.send(*tensor_to_frame("activations", tensor, session="s1", positions=[5, 6]))
            header, payload = await to_client.recv()
            assert header["session"] == "s1" and header["positions"] == [5, 6]
            assert torch.equal(frame_to_tensor(header, payload), tensor)

            await to_client.send({"type": "tokens", "ids": [1, 2, 3]})
            assert await to_server.recv() == ({"type": "tokens", "ids": [1, 2, 3], "payload_bytes": 0}, b"")

            empty = torch.empty(0, 4, dtype=torch.int64)
            await to_server.send(*tensor_to_frame("empty", empty))
            got = frame_to_tensor(*await to_client.recv())
            assert got.shape == (0, 4) and got.dtype == torch.int64
            await to_server.close()
            await to_client.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_many_frames_arrive_in_order_while_sent_from_several_tasks(transport: str) -> None:
    async def scenario() -> None:
        async with nodes(transport) as (server, client):
            to_server, to_client = await open_pair(server, client)
            blobs = {sender: os.urandom(100_000 + sender) for sender in range(4)}

            async def sender(index: int) -> None:
                for sequence in range(10):
                    await to_server.send({"type": "blob", "sender": index, "seq": sequence}, blobs[index])

            async def receiver() -> None:
                next_seq = dict.fromkeys(range(4), 0)
                for _ in range(40):
                    header, payload = await to_client.recv()
                    assert header["seq"] == next_seq[header["sender"]]
                    assert payload == blobs[header["sender"]]
                    next_seq[header["sender"]] += 1

            # Read while sending: QUIC flow control holds senders until the receiver reads.
            await asyncio.gather(receiver(), *(sender(index) for index in range(4)))
            await to_server.close()
            await to_client.close()

    asyncio.run(scenario())


RECOVERABLE = {
    "bad json": (raw_frame(b'{"type": "t", "payload_bytes": 3', b"abc"), "header"),
    "unknown type": (raw_frame({"type": "reboot", "payload_bytes": 0}), "type"),
    "unknown dtype": (
        raw_frame({"type": "act", "payload_bytes": 4, "dtype": "float8", "shape": [4]}, bytes(4)),
        "dtype",
    ),
    "negative dim": (
        raw_frame({"type": "act", "payload_bytes": 0, "dtype": "float32", "shape": [2, -1]}),
        "shape[1]",
    ),
    "shape vs payload": (
        raw_frame({"type": "act", "payload_bytes": 12, "dtype": "float32", "shape": [2, 2]}, bytes(12)),
        "shape",
    ),
    "payload_bytes disagrees": (raw_frame({"type": "act", "payload_bytes": 1}, b"abc"), "payload_bytes"),
}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_bad_frames_are_refused_and_the_channel_keeps_working(transport: str) -> None:
    async def scenario() -> None:
        async with nodes(transport, allowed_types={"act", "t", "ok"}) as (server, client):
            to_server, to_client = await open_pair(server, client)
            for name, (frame, field) in RECOVERABLE.items():
                await to_server._write([frame])
                await to_server.send({"type": "ok", "after": name}, b"good")
                with pytest.raises(FrameError) as caught:
                    await to_client.recv()
                assert caught.value.field == field, name
                assert caught.value.recoverable, name
                assert await to_client.recv() == ({"type": "ok", "after": name, "payload_bytes": 4}, b"good")
            assert not to_client.closed
            await to_server.close()
            await to_client.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_frames_hands_bad_frames_to_the_callback_and_ends_after_one_that_breaks_the_stream(transport: str) -> None:
    async def scenario() -> tuple[list, list]:
        async with nodes(transport, allowed_types={"act", "t", "ok"}) as (server, client):
            to_server, to_client = await open_pair(server, client)
            await to_server.send({"type": "ok", "n": 1})
            await to_server._write([RECOVERABLE["unknown type"][0]])
            await to_server.send({"type": "ok", "n": 2})
            await to_server._write([FATAL["oversized header"][0]])
            await to_server.send({"type": "ok", "n": 3})              # never read: the stream broke
            bad: list = []

            async def note(exc: FrameError) -> None:
                bad.append((exc.field, exc.recoverable))

            got = [header["n"] async for header, _ in to_client.frames(note)]
            await to_server.close()
            return got, bad

    got, bad = asyncio.run(scenario())
    assert got == [1, 2]
    assert bad == [(RECOVERABLE["unknown type"][1], True), ("header_bytes", False)]


FATAL = {
    "oversized header": (PREFIX.pack(100_000, 0) + b"{}", "header_bytes"),
    "oversized payload": (PREFIX.pack(2, 2**33) + b"{}", "payload_bytes"),
}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", sorted(FATAL))
def test_oversized_frame_drops_the_connection_but_the_node_keeps_serving(transport: str, case: str) -> None:
    frame, field = FATAL[case]

    async def scenario() -> None:
        async with nodes(transport) as (server, client):
            to_server, to_client = await open_pair(server, client)
            await to_server._write([frame])
            with pytest.raises(FrameError) as caught:
                await to_client.recv()
            assert caught.value.field == field and not caught.value.recoverable
            assert to_client.closed
            with pytest.raises(ConnectionClosed):
                await to_client.recv()
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(to_server.recv(), 10)  # the server dropped it
            await to_server.close()

            again_to_server, again_to_client = await open_pair(server, client)
            await again_to_server.send({"type": "ok"})
            assert (await again_to_client.recv())[0]["type"] == "ok"
            await again_to_server.close()
            await again_to_client.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stream_cut_inside_a_frame_is_reported_as_truncated(transport: str) -> None:
    async def scenario() -> None:
        async with nodes(transport) as (server, client):
            to_server, to_client = await open_pair(server, client)
            frame = raw_frame({"type": "t", "payload_bytes": 1000}, bytes(1000))
            await to_server._write([frame[:500]])
            await to_server._finish_sending()
            with pytest.raises(FrameError) as caught:
                await to_client.recv()
            assert caught.value.field == "payload" and "truncated" in caught.value.reason
            with pytest.raises(ConnectionClosed):
                await to_client.recv()
            await to_server.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_peer_closing_ends_recv_with_connection_closed_after_the_last_frame(transport: str) -> None:
    async def scenario() -> None:
        async with nodes(transport) as (server, client):
            to_server, to_client = await open_pair(server, client)

            async def send_and_close() -> None:
                # More than a QUIC stream window: send returns only as the receiver reads.
                await to_server.send({"type": "last"}, bytes(3_000_000))
                await to_server.close()  # returns at once; the connection lingers for the peer

            sending = asyncio.ensure_future(send_and_close())
            header, payload = await to_client.recv()
            await sending
            assert header["type"] == "last" and len(payload) == 3_000_000
            with pytest.raises(ConnectionClosed):
                await to_client.recv()
            await to_client.close()
            with pytest.raises(ConnectionClosed):
                await to_client.send({"type": "late"})

    async def scenario_with_reader() -> None:
        # The usual shape: a reader task answers until the peer leaves, then closes its side.
        async with nodes(transport) as (server, client):
            to_server, to_client = await open_pair(server, client)
            received: list[str] = []

            async def reader() -> None:
                async with to_client:
                    while True:
                        try:
                            header, _ = await to_client.recv()
                        except ConnectionClosed:
                            return
                        received.append(header["type"])

            task = asyncio.ensure_future(reader())
            for index in range(5):
                await to_server.send({"type": f"f{index}"}, bytes(200_000))
            await asyncio.wait_for(to_server.close(), 10)
            await asyncio.wait_for(task, 10)
            assert received == [f"f{index}" for index in range(5)]

    asyncio.run(scenario_with_reader())
    asyncio.run(scenario())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_peer_without_the_prismn_hello_is_dropped_and_others_still_get_in(transport: str) -> None:
    async def scenario() -> None:
        async with nodes(transport) as (server, client):
            stranger = await client.connect(server.address)
            # Replace the hello this channel already sent with garbage by opening a raw one.
            if transport == "tcp":
                from engine.transport.tcp_channel import parse_host_port

                host, port = parse_host_port(server.address)
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(b"GET / HTTP/1.1\r\n\r\n")
                await writer.drain()
                assert await asyncio.wait_for(reader.read(), 10) == b""  # server hung up
                writer.close()
            else:
                import iroh

                from engine.transport.iroh_channel import ALPN

                connection = await client._endpoint.connect(
                    iroh.EndpointTicket.from_string(server.address).endpoint_addr(), ALPN
                )
                stream = await connection.open_bi()
                await stream.send().write_all(b"NOTPRISMN")
                with pytest.raises(iroh.IrohError):
                    await asyncio.wait_for(stream.recv().read_exact(1), 10)
            accepted = await asyncio.wait_for(server.accept(), 10)  # the stranger with a real hello
            await stranger.send({"type": "hi"})
            assert (await accepted.recv())[0]["type"] == "hi"
            await stranger.close()
            await accepted.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_malformed_and_unreachable_addresses_fail_clearly(transport: str) -> None:
    async def scenario() -> None:
        async with await start_node(transport) as node:
            with pytest.raises(InvalidInput) as caught:
                await node.connect("no-port-here")
            assert caught.value.field == "address"
            gone = await start_node(transport)
            address = gone.address
            await gone.close()
            with pytest.raises(ConnectionClosed):
                await node.connect(address, timeout_s=1.5)

    asyncio.run(scenario())


def test_unknown_transport_is_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        asyncio.run(start_node("carrier-pigeon"))
    assert caught.value.field == "transport"


def test_receiver_limits_refuse_a_frame_the_sender_allowed() -> None:
    async def scenario() -> None:
        limits = FrameLimits(max_payload_bytes=1000)
        async with nodes("tcp", limits=limits) as (server, client):
            to_server, to_client = await open_pair(server, client)
            await to_server.send({"type": "big"}, bytes(1001))
            with pytest.raises(FrameError) as caught:
                await to_client.recv()
            assert caught.value.field == "payload_bytes" and not caught.value.recoverable
            await to_server.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_closing_a_node_wakes_accept_and_ends_its_channels(transport: str) -> None:
    async def scenario() -> None:
        async with await start_node(transport) as client:
            server = await start_node(transport)
            to_server, to_client = await open_pair(server, client)
            waiting = asyncio.ensure_future(server.accept())
            await asyncio.sleep(0.05)
            await server.close()
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(waiting, 10)
            with pytest.raises(ConnectionClosed):
                await server.accept()
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(to_client.recv(), 10)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(to_server.recv(), 10)  # the peer sees it too
            await to_server.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_frames_sent_right_before_close_still_reach_a_slow_reader(transport: str) -> None:
    from engine.transport import base

    async def scenario() -> None:
        async with nodes(transport) as (server, client):
            to_server, to_client = await open_pair(server, client)
            blobs = [os.urandom(300_000) for _ in range(3)]
            for index, blob in enumerate(blobs):
                await to_server.send({"type": "part", "index": index}, blob)
            await to_server.close()  # returns at once; the connection lingers for the reader
            await asyncio.sleep(0.5)
            for index, blob in enumerate(blobs):
                header, payload = await to_client.recv()
                assert header["index"] == index and payload == blob
            with pytest.raises(ConnectionClosed):
                await to_client.recv()
            await to_client.close()
            # The lingering side lets go as soon as the reader is done: well before LINGER_S, when it
            # would let go anyway (the budget stays under it so the check can fail; slack for a busy box).
            await asyncio.to_thread(poll, lambda: not base._LINGERING, base.LINGER_S * 0.8,
                                    "the lingering side to let go", every_s=0.02)

    asyncio.run(scenario())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_closed_node_frees_its_port_at_once(transport: str) -> None:
    async def scenario() -> None:
        first = await start_node(transport)
        to_first = await start_node(transport)
        channel = await to_first.connect(first.address)
        await first.accept()
        port = (
            first.bound_sockets[0].rsplit(":", 1)[1]
            if transport == "iroh"
            else first.address.rsplit(":", 1)[1]
        )
        await first.close()
        second = await start_node(transport, bind_addr=f"127.0.0.1:{port}")
        await second.close()
        await channel.close()
        await to_first.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_recv_abandoned_mid_frame_hands_the_whole_frame_to_the_next_recv(transport: str) -> None:
    async def scenario() -> None:
        async with nodes(transport) as (server, client):
            to_server, to_client = await open_pair(server, client)
            frame = raw_frame({"type": "t", "payload_bytes": 200_000}, os.urandom(200_000))
            await to_server._write([frame[:100_000]])
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(to_client.recv(), 0.3)  # gives up in the middle of the payload
            await to_server._write([frame[100_000:]])
            await to_server.send({"type": "next"})
            header, payload = await asyncio.wait_for(to_client.recv(), 10)
            assert header["type"] == "t" and payload == frame[-200_000:]
            assert (await asyncio.wait_for(to_client.recv(), 10))[0]["type"] == "next"
            await to_server.close()
            await to_client.close()

    asyncio.run(scenario())


def test_a_send_abandoned_mid_frame_still_writes_the_whole_frame() -> None:
    # iroh only: its stream window (~1.25 MB) makes a 3 MB send wait for the reader.
    async def scenario() -> None:
        async with nodes("iroh") as (server, client):
            to_server, to_client = await open_pair(server, client)
            blob = os.urandom(3_000_000)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(to_server.send({"type": "big"}, blob), 0.3)
            sending_next = asyncio.ensure_future(to_server.send({"type": "next"}))
            header, payload = await asyncio.wait_for(to_client.recv(), 10)
            assert header["type"] == "big" and payload == blob
            assert (await asyncio.wait_for(to_client.recv(), 10))[0]["type"] == "next"
            await sending_next
            await to_server.close()
            await to_client.close()

    asyncio.run(scenario())
