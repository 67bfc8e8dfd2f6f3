"""PipelineClient routes each reply to the step waiting for it, whatever order replies come in."""

from __future__ import annotations

import asyncio

import pytest
import torch

from engine.generate import PipelineClient
from engine.transport import start_node
from engine.transport.frames import frame_to_tensor, tensor_to_frame


async def reversing_stage(node, replies_sent: list[int]) -> None:
    """A one-stage pipeline that holds two forwards and answers the second first (as a short decode
    step can overtake a long prefill of another session on a real swarm)."""
    channel = await node.accept()
    held = []
    while len(held) < 2:
        header, payload = await channel.recv()
        held.append((header, frame_to_tensor(header, payload)))
    answer_to = await node.connect(held[0][0]["reply_to"])
    for header, inputs in reversed(held):
        out_header, out_payload = tensor_to_frame("result", inputs * 10, request_id=header["request_id"],
                                                  session_id=header["session_id"], position=header["position"])
        await answer_to.send(out_header, out_payload)
        replies_sent.append(header["request_id"])
    await asyncio.sleep(0.5)
    await answer_to.close()


@pytest.mark.timeout(60)
def test_concurrent_sessions_get_their_own_results_when_replies_come_back_out_of_order():
    async def scenario():
        stage = await start_node("tcp")
        replies_sent: list[int] = []
        server = asyncio.ensure_future(reversing_stage(stage, replies_sent))
        client = await PipelineClient.open("tcp", [stage.address])
        try:
            a, b = await asyncio.gather(
                client.forward("session-a", 0, torch.tensor([[1]]), timeout_s=20),
                client.forward("session-b", 0, torch.tensor([[2]]), timeout_s=20))
            return a.tolist(), b.tolist(), len(replies_sent)
        finally:
            await client.close()
            server.cancel()
            await stage.close()

    a, b, sent = asyncio.run(scenario())
    assert sent == 2
    assert (a, b) == ([[10]], [[20]])
