"""A runner serves a bounded number of channels at once: one over the cap is told why and closed,
the open ones keep serving, and a freed slot is usable again."""

from __future__ import annotations

import asyncio
import time

import pytest

from engine.runner.server import RunnerServer
from engine.runner.shards import load_stage
from engine.runner.stage import StageExecutor
from engine.transport import start_node
from engine.transport.base import ConnectionClosed

pytestmark = pytest.mark.timeout(120)


async def ping(channel) -> dict:
    await channel.send({"type": "ping"})
    header, _ = await asyncio.wait_for(channel.recv(), 30)
    return header


def test_a_channel_over_the_cap_is_refused_and_a_freed_slot_serves_again(tiny_llama):
    executor = StageExecutor(load_stage(tiny_llama, 0, 6, device="cpu"))

    async def scenario():
        server = RunnerServer(executor, await start_node("tcp"), max_channels=2)
        serving = asyncio.ensure_future(server.serve_forever())
        client = await start_node("tcp")
        try:
            first, second = [await client.connect(server.node.address) for _ in range(2)]
            assert (await ping(first))["type"] == (await ping(second))["type"] == "pong"
            third = await client.connect(server.node.address)
            refusal, _ = await asyncio.wait_for(third.recv(), 30)
            assert refusal["type"] == "error" and refusal["field"] == "channels"
            assert "at most 2" in refusal["reason"]
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(third.recv(), 30)
            assert (await ping(first))["type"] == "pong"            # the open ones are untouched
            await second.close()
            deadline_s = time.monotonic() + 30                     # the runner sees the close soon after
            while True:
                fourth = await client.connect(server.node.address)
                try:
                    header = await ping(fourth)
                except ConnectionClosed:                           # refused: the slot is not free yet
                    header = {"type": "closed"}
                if header["type"] == "pong" or time.monotonic() > deadline_s:
                    break
                await fourth.close()
            assert header["type"] == "pong"
            for channel in (first, third, fourth):
                await channel.close()
        finally:
            await client.close()
            await server.close()
            serving.cancel()

    asyncio.run(scenario())
