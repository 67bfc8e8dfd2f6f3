"""A peer in another process (python -m engine.transport.echo) answers over iroh and TCP."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
import torch

from engine.paths import REPO_ROOT
from engine.transport import frame_to_tensor, start_node, tensor_to_frame

pytestmark = pytest.mark.timeout(120)


async def start_echo_peer(transport: str, channels: int) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine.transport.echo",
        "--transport",
        transport,
        "--channels",
        str(channels),
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode().strip()
    assert line.startswith("ADDRESS "), line
    return process, line.removeprefix("ADDRESS ")


@pytest.mark.parametrize("transport", ["iroh", "tcp"])
def test_echo_peer_in_another_process_returns_every_frame(transport: str) -> None:
    async def scenario() -> None:
        process, address = await start_echo_peer(transport, channels=2)
        try:
            async with await start_node(transport) as node:
                channel = await node.connect(address)
                tensor = torch.randn(3, 5).to(torch.bfloat16)
                await channel.send(*tensor_to_frame("activations", tensor, session="x"))
                header, payload = await channel.recv()
                assert header["session"] == "x" and torch.equal(frame_to_tensor(header, payload), tensor)

                blob = os.urandom(5 * 2**20)
                sending = asyncio.ensure_future(channel.send({"type": "blob"}, blob))
                header, payload = await channel.recv()
                await sending
                assert payload == blob

                # A bad frame is answered with an error naming the field, then service goes on.
                await channel._write([b"\x00\x00\x00\x05" + (0).to_bytes(8, "big") + b"{oops"])
                header, _ = await channel.recv()
                assert header["type"] == "error" and header["field"] == "header"
                await channel.send({"type": "ping"})
                assert (await channel.recv())[0]["type"] == "ping"
                await channel.close()

                # The peer still serves a second channel after the first is gone.
                second = await node.connect(address)
                await second.send({"type": "ping", "n": 2})
                assert (await second.recv())[0] == {"type": "ping", "n": 2, "payload_bytes": 0}
                await second.close()
            assert await asyncio.wait_for(process.wait(), 30) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    asyncio.run(scenario())
