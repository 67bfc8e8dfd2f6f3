"""Steps of several sessions that come in on ONE channel (a previous stage sends every session's
hidden states on its one link) compute together: a forward does not wait for the compute of the
forward before it, and each session still gets the very logits it gets alone."""

from __future__ import annotations

import asyncio
import time

import pytest
import torch

from engine.runner.server import RunnerServer
from engine.runner.shards import load_stage
from engine.runner.stage import StageExecutor
from engine.transport import start_node
from engine.transport.frames import frame_to_tensor, tensor_to_frame

pytestmark = pytest.mark.timeout(120)
SESSIONS = 4


def test_forwards_on_one_channel_are_batched_and_each_gets_its_logits_alone(tiny_llama):
    executor = StageExecutor(load_stage(tiny_llama, 2, 6, device="cpu"))      # a later, last stage
    reference = StageExecutor(load_stage(tiny_llama, 2, 6, device="cpu"))
    torch.manual_seed(0)
    hidden = executor.hidden_size
    prompts = [torch.randn(1, 3 + i, hidden) for i in range(SESSIONS)]
    steps = [torch.randn(1, 1, hidden) for _ in range(SESSIONS)]
    expected = []
    for i, (prompt, step) in enumerate(zip(prompts, steps, strict=True)):
        reference.forward(f"s{i}", 0, prompt, last_only=True)
        expected.append(reference.forward(f"s{i}", prompt.shape[1], step, last_only=True))

    slow_first_round = [True]
    original = executor.forward_batch

    def forward_batch(batch, last_only=True):      # the first decode round computes long enough for the
        if slow_first_round[0] and batch[0].position > 0:     # other frames to arrive meanwhile
            slow_first_round[0] = False
            time.sleep(0.3)
        return original(batch, last_only)

    executor.forward_batch = forward_batch

    async def scenario():
        server = RunnerServer(executor, await start_node("tcp"))
        serving = asyncio.ensure_future(server.serve_forever())
        client = await start_node("tcp")
        try:
            channel = await client.connect(server.node.address)

            async def forward(index: int, tensor: torch.Tensor, position: int) -> None:
                await channel.send(*tensor_to_frame("forward", tensor, request_id=index, session_id=f"s{index}",
                                                    position=position, want="logits"))

            for i, prompt in enumerate(prompts):                   # prefills, one after another
                await forward(i, prompt, 0)
                header, _ = await asyncio.wait_for(channel.recv(), 30)
                assert header["type"] == "result", header
            for i, step in enumerate(steps):                       # decode steps, back to back
                await forward(i, step, prompts[i].shape[1])
            results = {}
            while len(results) < SESSIONS:
                header, payload = await asyncio.wait_for(channel.recv(), 30)
                assert header["type"] == "result", header
                results[header["request_id"]] = frame_to_tensor(header, payload)
            await channel.close()
            return results, server.steps.largest_batch
        finally:
            await client.close()
            await server.close()
            serving.cancel()

    results, largest_batch = asyncio.run(scenario())
    assert largest_batch >= SESSIONS - 1         # at worst: the first alone, then all that came meanwhile
    for i in range(SESSIONS):
        assert torch.equal(results[i], expected[i].float())
