"""A runner leaves a coordinator that stopped talking, but not one whose pings it could not read while
its own loop was stalled (a stage loading in a thread holds the interpreter for seconds).

The coordinator side is a real TCP node on its own thread and loop, pinging every 0.1 s, then silent."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from engine.runner.agent import _words
from engine.transport.base import ConnectionClosed
from engine.transport.tcp_channel import TcpNode, tcp_connect

pytestmark = pytest.mark.timeout(60)

SILENCE_S = 1.0


class PingingCoordinator:
    """Pings its one caller every 0.1 s until `quiet` is set, then keeps the connection open, silent."""

    def __init__(self) -> None:
        self.address = ""
        self.ready = threading.Event()
        self.quiet = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    async def _serve(self) -> None:
        node = await TcpNode.start("127.0.0.1:0")
        self.address = node.address
        self.ready.set()
        channel = await node.accept()
        while not self.stop.is_set():
            if not self.quiet.is_set():
                await channel.send({"type": "ping"})
            await asyncio.sleep(0.1)
        await node.close()


def test_a_stalled_runner_stays_and_a_silent_coordinator_is_left():
    coordinator = PingingCoordinator()

    async def runner() -> tuple[int, float]:
        channel = await tcp_connect(coordinator.address)
        frames = 0
        quiet_s = 0.0
        try:
            async for _header, _payload in _words(channel, SILENCE_S):
                frames += 1
                if frames == 1:
                    # the loop stalls while the runner waits for the next frame; pings pile up unread
                    asyncio.get_running_loop().call_later(0.05, time.sleep, 2.5 * SILENCE_S)
                elif frames == 40:
                    coordinator.quiet.set()
                    quiet_s = time.monotonic()
        except ConnectionClosed:
            return frames, time.monotonic() - quiet_s
        finally:
            await channel.close()
        raise AssertionError("the frames ended without the silence being noticed")

    try:
        frames, left_after_s = asyncio.run(asyncio.wait_for(runner(), 30))
    finally:
        coordinator.stop.set()
        coordinator.thread.join(10)
    assert frames >= 40                                  # it read on through and after the stall
    assert SILENCE_S <= left_after_s <= SILENCE_S + 1.0  # and left a silent coordinator soon after
