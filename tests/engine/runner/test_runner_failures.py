"""A runner that dies mid-generation: the ingress hears a clear error naming what is gone, at once,
instead of waiting out its step timeout."""

from __future__ import annotations

import asyncio

import pytest
import torch

from engine.errors import PrismnError
from engine.generate import open_pipeline, start_runners, stop_runners
from tests.engine.runner.conftest import PROMPT_IDS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
STEP_TIMEOUT_S = 90      # far above a step here; the errors must come well before it, not as a timeout


async def step_then_kill(runners, victim_index: int) -> PrismnError:
    client = await open_pipeline("tcp", runners)
    try:
        token = await client.forward("s", 0, torch.tensor([PROMPT_IDS]), timeout_s=STEP_TIMEOUT_S)
        victim = runners[victim_index].process
        victim.kill()
        await asyncio.to_thread(victim.wait)
        with pytest.raises(PrismnError) as caught:
            await client.forward("s", len(PROMPT_IDS), token, timeout_s=STEP_TIMEOUT_S)
        await client.end_session("s")         # best effort: does not hide the error or hang
        return caught.value
    finally:
        await client.close()


@pytest.mark.parametrize("victim_index", [2, 0])
def test_a_dead_stage_is_reported_to_the_ingress_naming_it(tiny_llama, victim_index):
    runners = start_runners(str(tiny_llama), [(0, 2), (2, 4), (4, 6)], "tcp", ready_timeout_s=120)
    try:
        error = asyncio.run(step_then_kill(runners, victim_index))
    finally:
        stop_runners(runners)
    assert "no result from the pipeline" not in str(error)          # not the step timeout
    assert runners[victim_index].address in str(error)
