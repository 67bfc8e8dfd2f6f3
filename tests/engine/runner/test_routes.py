"""Runners started by an ingress send hidden states and results only to the addresses it assigned:
a frame naming any other address is refused before compute, and nothing reaches that address."""

from __future__ import annotations

import asyncio

import pytest
import torch

from engine.errors import InvalidInput
from engine.generate import PipelineClient, assign_routes, greedy_generate, start_runners, stop_runners
from engine.transport import start_node
from engine.transport.frames import tensor_to_frame
from tests.conftest import poll
from tests.engine.runner.conftest import EOS, PROMPT_IDS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def restricted_runners(tiny_llama):
    runners = start_runners(str(tiny_llama), [(0, 3), (3, 6)], "tcp", ready_timeout_s=120)
    yield runners
    stop_runners(runners)


def test_only_assigned_routes_are_served_and_strangers_get_nothing(restricted_runners, tiny_llama_model):
    addresses = [r.address for r in restricted_runners]
    want = tiny_llama_model.generate(torch.tensor([PROMPT_IDS]), max_new_tokens=4,
                                     do_sample=False)[0, len(PROMPT_IDS):].tolist()

    async def scenario():
        stranger = await start_node("tcp")
        client = await PipelineClient.open("tcp", addresses)
        try:
            assign_routes(restricted_runners, [*addresses, client.node.address])
            generated = await greedy_generate(client, PROMPT_IDS, 4, {EOS}, session_id="assigned")

            refusals = []
            for fields in ({"route": [stranger.address], "reply_to": client.node.address},    # a detour
                           {"route": addresses[1:], "reply_to": stranger.address}):           # a wrong ingress
                header, payload = tensor_to_frame("forward", torch.tensor([PROMPT_IDS]), request_id=99,
                                                  session_id="detour", position=0, want="token", **fields)
                await client._first.send(header, payload)
                reply, _ = await asyncio.wait_for(client.unclaimed.get(), 60)
                refusals.append((reply["type"], reply["field"], reply["reason"]))
            with pytest.raises(TimeoutError):                      # no runner ever dialled the stranger
                await asyncio.wait_for(stranger.accept(), 1.0)
            return generated["token_ids"], refusals
        finally:
            await client.close()
            await stranger.close()

    tokens, refusals = asyncio.run(scenario())
    assert tokens == want
    assert [r[:2] for r in refusals] == [("error", "route[0]"), ("error", "reply_to")]
    assert all("not an address assigned" in r[2] for r in refusals)


def test_routes_need_a_runner_started_to_take_them(tiny_llama):
    runners = start_runners(str(tiny_llama), [(0, 6)], "tcp", ready_timeout_s=120, restrict_routes=False)
    try:
        with pytest.raises(InvalidInput) as caught:
            assign_routes(runners, ["127.0.0.1:1"])
        assert caught.value.field == "restrict_routes"
    finally:
        stop_runners(runners)


def test_a_stranger_cannot_post_results_to_the_ingress(restricted_runners, tiny_llama_model):
    addresses = [r.address for r in restricted_runners]
    with torch.no_grad():
        want = int(tiny_llama_model(torch.tensor([PROMPT_IDS])).logits[0, -1].argmax())
    forged_token = (want + 1) % 256

    async def scenario():
        client = await PipelineClient.open("tcp", addresses)
        stranger = await start_node("tcp")
        try:
            assign_routes(restricted_runners, [*addresses, client.node.address])
            to_ingress = await stranger.connect(client.node.address)
            for request_id in range(1000):              # results for every id a counter would use first
                header, payload = tensor_to_frame("result", torch.tensor([[forged_token]]), request_id=request_id,
                                                  session_id="spoofed", position=0)
                await to_ingress.send(header, payload)
            await to_ingress.close()
            await asyncio.to_thread(poll, lambda: client.unclaimed.qsize() >= 1000, 30,    # all forged results
                                    "the forged results to arrive")                         # are waiting first
            assert client.unclaimed.qsize() == 1000
            return int(await client.forward("real", 0, torch.tensor([PROMPT_IDS]), timeout_s=60))
        finally:
            await client.close()
            await stranger.close()

    assert asyncio.run(scenario()) == want
