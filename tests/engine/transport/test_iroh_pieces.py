"""iroh moves bytes across the FFI in pieces and reads ahead: frames still arrive whole, in order,
whatever their sizes relative to a piece and however the reads split them."""

from __future__ import annotations

import asyncio
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.transport import ConnectionClosed, FrameError, iroh_channel, start_node
from engine.transport.frames import PREFIX
from engine.transport.iroh_channel import PIECE_BYTES, _pieces

pytestmark = pytest.mark.timeout(60)


@given(
    chunk_sizes=st.lists(st.integers(min_value=0, max_value=40), max_size=6),
    piece_bytes=st.integers(min_value=1, max_value=16),
)
def test_pieces_regroup_the_chunks_in_order_into_full_pieces(
    chunk_sizes: list[int], piece_bytes: int
) -> None:
    chunks = [os.urandom(size) for size in chunk_sizes]
    pieces = list(_pieces(chunks, piece_bytes))
    assert b"".join(pieces) == b"".join(chunks)
    assert all(type(piece) is bytes and 0 < len(piece) <= piece_bytes for piece in pieces)
    assert all(len(piece) == piece_bytes for piece in pieces[:-1])


def test_pieces_accept_any_byte_buffer() -> None:
    data = os.urandom(100)
    for chunk in (bytearray(data), memoryview(data), memoryview(bytearray(data)).cast("I")):
        assert b"".join(_pieces([b"head", chunk], 32)) == b"head" + data


@pytest.mark.parametrize("piece_bytes", [PIECE_BYTES, 1000])
def test_frames_around_the_piece_size_arrive_whole_and_in_order(piece_bytes: int, monkeypatch) -> None:
    """Sent back to back before any is read, so reads ahead carry parts of the following frames."""
    monkeypatch.setattr(iroh_channel, "PIECE_BYTES", piece_bytes)
    sizes = [0, 1, piece_bytes - 40, piece_bytes, piece_bytes + 1, 3 * piece_bytes + 17, 5, 2 * piece_bytes]
    payloads = [os.urandom(size) for size in sizes]

    async def scenario() -> None:
        async with await start_node("iroh") as server, await start_node("iroh") as client:
            to_server = await client.connect(server.address)
            to_client = await server.accept()

            async def send_all() -> None:
                for index, payload in enumerate(payloads):
                    await to_server.send({"type": "blob", "index": index}, payload)

            sending = asyncio.ensure_future(send_all())
            for index, payload in enumerate(payloads):
                header, received = await to_client.recv()
                assert header["index"] == index and received == payload and type(received) is bytes
            await sending
            await to_server.close()
            with pytest.raises(ConnectionClosed):
                await to_client.recv()
            await to_client.close()

    asyncio.run(scenario())


def test_a_stream_cut_after_a_read_ahead_reports_the_frame_as_truncated(monkeypatch) -> None:
    """The prefix and part of the payload were already read ahead when the stream ends."""
    monkeypatch.setattr(iroh_channel, "PIECE_BYTES", 64)
    header_json = b'{"type":"t","payload_bytes":1000}'
    frame = PREFIX.pack(len(header_json), 1000) + header_json + bytes(1000)

    async def scenario() -> None:
        async with await start_node("iroh") as server, await start_node("iroh") as client:
            to_server = await client.connect(server.address)
            to_client = await server.accept()
            await to_server.send({"type": "first"})
            await to_server._write([frame[:300]])
            await to_server._finish_sending()
            assert (await to_client.recv())[0]["type"] == "first"
            with pytest.raises(FrameError) as caught:
                await to_client.recv()
            assert caught.value.field == "payload" and not caught.value.recoverable
            with pytest.raises(ConnectionClosed):
                await to_client.recv()
            await to_server.close()

    asyncio.run(scenario())
