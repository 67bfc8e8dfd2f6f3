"""What a stranger can do to a runner, tried on loopback: hold its channels with bare hellos, stall
inside a frame, take every session, end or step someone else's session, flood it, make it dial an
address of its choosing, read a C++ backtrace, or learn what it runs from a ping. Each is bounded
or refused, and the runner keeps serving the others."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import torch

from engine.runner.limits import RunnerLimits
from engine.runner.server import RunnerServer
from engine.runner.shards import load_stage
from engine.runner.stage import StageExecutor
from engine.transport import start_node
from engine.transport.base import HELLO, ConnectionClosed
from engine.transport.frames import PREFIX, tensor_to_frame
from engine.transport.tcp_channel import parse_host_port
from tests.engine.runner.conftest import PROMPT_IDS

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def first_stage(tiny_llama) -> StageExecutor:
    return StageExecutor(load_stage(tiny_llama, 0, 3, device="cpu"))


async def serving(executor: StageExecutor, **kwargs) -> tuple[RunnerServer, asyncio.Future]:
    server = RunnerServer(executor, await start_node("tcp"), **kwargs)
    return server, asyncio.ensure_future(server.serve_forever())


async def request(channel, header: dict, payload: bytes = b"", timeout_s: float = 30.0) -> dict:
    await channel.send(header, payload)
    reply, _ = await asyncio.wait_for(channel.recv(), timeout_s)
    return reply


def forward(session_id: str, position: int, ids: list[int], **fields) -> tuple[dict, bytes]:
    return tensor_to_frame("forward", torch.tensor([ids]), request_id=1, session_id=session_id,
                           position=position, want="hidden", **fields)


async def raw_hello_only(address: str) -> asyncio.StreamWriter:
    host, port = parse_host_port(address)
    _, writer = await asyncio.open_connection(host, port)
    writer.write(HELLO)
    await writer.drain()
    return writer


def test_connections_that_only_say_hello_are_closed_and_free_their_slots(first_stage):
    async def scenario():
        server, task = await serving(first_stage, max_channels=4, limits=RunnerLimits(first_frame_s=0.5))
        client = await start_node("tcp")
        squatters = [await raw_hello_only(server.node.address) for _ in range(4)]
        try:
            deadline_s = time.monotonic() + 20
            while True:       # refused while the squatters hold every slot, served once they are dropped
                channel = await client.connect(server.node.address)
                try:
                    reply = await request(channel, {"type": "ping"}, timeout_s=5)
                except ConnectionClosed:
                    reply = {"type": "closed"}
                await channel.close()
                if reply["type"] == "pong" or time.monotonic() > deadline_s:
                    break
                await asyncio.sleep(0.1)
            assert reply["type"] == "pong"
        finally:
            for writer in squatters:
                writer.close()
            await client.close()
            await server.close()
            task.cancel()
    asyncio.run(scenario())


def test_a_sender_stalling_inside_a_frame_is_dropped(first_stage):
    async def scenario():
        server, task = await serving(first_stage, limits=RunnerLimits(frame_stall_s=0.5))
        try:
            host, port = parse_host_port(server.node.address)
            reader, writer = await asyncio.open_connection(host, port)
            # Within the payload cap, but only the first 1000 bytes ever arrive.
            writer.write(HELLO + PREFIX.pack(2, 500_000) + b"{}" + b"\0" * 1000)
            await writer.drain()
            started = time.monotonic()
            assert await asyncio.wait_for(reader.read(), 30) == b""          # closed by the runner
            assert time.monotonic() - started < 10
            writer.close()
        finally:
            await server.close()
            task.cancel()
    asyncio.run(scenario())


def test_a_frame_larger_than_this_model_can_use_is_refused_at_its_prefix(first_stage):
    async def scenario():
        server, task = await serving(first_stage)
        limit = server.channel_limits.max_read_payload_bytes
        # A whole context of fp32 hidden states for the tiny model, far below the transport's 256 MiB.
        config = first_stage.config
        assert limit == max(2**20, config.max_position_embeddings * config.hidden_size * 4) < 256 * 2**20
        try:
            host, port = parse_host_port(server.node.address)
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(HELLO + PREFIX.pack(2, limit + 1) + b"{}")
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 30) == b""
            writer.close()
        finally:
            await server.close()
            task.cancel()
    asyncio.run(scenario())


def test_sessions_belong_to_the_client_that_opened_them_and_each_client_has_a_share(first_stage):
    async def scenario():
        server, task = await serving(first_stage, limits=RunnerLimits(max_sessions_per_client=2,
                                                                      max_kv_tokens_per_client=64))
        client = await start_node("tcp")
        try:
            owner = await client.connect(server.node.address)
            stranger = await client.connect(server.node.address)
            assert (await request(owner, *forward("mine", 0, PROMPT_IDS)))["type"] == "result"
            ended = await request(stranger, {"type": "end_session", "session_id": "mine"})
            assert ended["type"] == "error" and "belongs to another client" in ended["reason"]
            injected = await request(stranger, *forward("mine", len(PROMPT_IDS), [7]))
            assert injected["type"] == "error" and injected["field"] == "session_id"
            assert (await request(owner, *forward("mine", len(PROMPT_IDS), [7])))["type"] == "result"

            assert (await request(owner, *forward("second", 0, PROMPT_IDS)))["type"] == "result"
            third = await request(owner, *forward("third", 0, PROMPT_IDS))
            assert third["type"] == "error" and "already holds 2 sessions" in third["reason"]
            long_prefill = await request(stranger, *forward("long", 0, [1] * 65))
            assert long_prefill["type"] == "error" and "64 cached positions" in long_prefill["reason"]
            # The limits are per client: the stranger still gets its own sessions.
            assert (await request(stranger, *forward("theirs", 0, PROMPT_IDS)))["type"] == "result"
            assert (await request(owner, {"type": "end_session", "session_id": "mine"}))["ended"] is True
            assert (await request(owner, *forward("third", 0, PROMPT_IDS)))["type"] == "result"
        finally:
            await client.close()
            await server.close()
            task.cancel()
    asyncio.run(scenario())


def test_a_flood_is_rate_limited_and_the_channel_serves_again_after(first_stage):
    async def scenario():
        server, task = await serving(first_stage, limits=RunnerLimits(max_frames_per_s=5))
        client = await start_node("tcp")
        try:
            channel = await client.connect(server.node.address)
            replies = [await request(channel, {"type": "ping"}) for _ in range(30)]
            refused = [r for r in replies if r["type"] == "error"]
            assert refused and all(r["field"] == "rate" for r in refused)
            await asyncio.sleep(0.5)
            assert (await request(channel, {"type": "ping"}))["type"] == "pong"
        finally:
            await client.close()
            await server.close()
            task.cancel()
    asyncio.run(scenario())


def test_a_standalone_runner_dials_no_address_a_frame_names(first_stage):
    async def scenario():
        server, task = await serving(first_stage)           # no --routes-from-stdin, no routes assigned
        client = await start_node("tcp")
        listener = await start_node("tcp")
        try:
            channel = await client.connect(server.node.address)
            reply = await request(channel, *forward("detour", 0, PROMPT_IDS, route=[listener.address],
                                                    reply_to=listener.address))
            assert reply["type"] == "error" and reply["field"] == "route"
            assert "no routes were assigned" in reply["reason"]
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(listener.accept(), 1.0)              # nothing was sent to it
            # Its own channel still gets answers.
            assert (await request(channel, *forward("plain", 0, PROMPT_IDS)))["type"] == "result"
        finally:
            await client.close()
            await listener.close()
            await server.close()
            task.cancel()
    asyncio.run(scenario())


def test_with_an_access_token_strangers_get_nothing_but_an_error(first_stage):
    async def scenario():
        server, task = await serving(first_stage, restrict_routes=True)
        client = await start_node("tcp")
        token = "t" * 32
        server.allow_routes([client.address], token=token)
        try:
            stranger = await client.connect(server.node.address)
            reply = await request(stranger, {"type": "ping"})
            assert reply["type"] == "error" and reply["field"] == "hello" and "info" not in reply
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(stranger.recv(), 10)
            guesser = await client.connect(server.node.address)
            assert (await request(guesser, {"type": "hello", "token": "x" * 32}))["field"] == "token"
            member = await client.connect(server.node.address)
            assert (await request(member, {"type": "hello", "token": token}))["ok"] is True
            pong = await request(member, {"type": "ping"})
            assert pong["type"] == "pong" and "info" in pong
        finally:
            await client.close()
            await server.close()
            task.cancel()
    asyncio.run(scenario())


def test_errors_say_what_failed_not_where_in_memory_and_pings_tell_strangers_nothing(first_stage):
    async def scenario():
        server, task = await serving(first_stage, info={"model": "secret-model", "lat": 48.85})
        client = await start_node("tcp")
        try:
            channel = await client.connect(server.node.address)
            hostile = json.dumps({"type": "forward", "request_id": 1, "session_id": "x", "position": 0,
                                  "dtype": "int64", "shape": [0, 2**70], "payload_bytes": 0}).encode()
            await channel._write([PREFIX.pack(len(hostile), 0) + hostile])    # our own sender refuses it
            reply, _ = await asyncio.wait_for(channel.recv(), 30)
            assert reply["type"] == "error" and reply["field"] == "shape[1]"
            pong = await request(channel, {"type": "ping"})
            assert pong["type"] == "pong" and "secret-model" not in repr(pong) and "48.85" not in repr(pong)
        finally:
            await client.close()
            await server.close()
            task.cancel()
    asyncio.run(scenario())


def test_an_unexpected_failure_is_reported_without_its_native_text():
    from engine.runner.server import error_header

    native = RuntimeError("Overflow\nframe #0: c10::Error (0x7f68b4f5cb8d in /x/torch/lib/libc10.so)")
    header = error_header(native, {"type": "forward", "request_id": 3})
    assert "0x7f" not in header["reason"] and ".so" not in header["reason"]
    assert header["reason"].startswith("RuntimeError while handling forward") and header["request_id"] == 3
