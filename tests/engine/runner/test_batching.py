"""Continuous batching at a stage: decode steps of several sessions in one forward pass give each
session exactly what it gets alone; limits refuse new sessions and leave running ones alone."""

from __future__ import annotations

import asyncio

import pytest
import torch

from engine.errors import InvalidInput
from engine.runner.batching import StepQueue
from engine.runner.shards import load_stage
from engine.runner.stage import StageExecutor, Step
from tests.engine.runner.conftest import PROMPT_IDS, save_tiny

SPLIT = [(0, 2), (2, 4), (4, 6)]
PROMPTS = [PROMPT_IDS, [9, 8, 7], list(range(1, 14)), [42]]       # different lengths: different caches
NEW_TOKENS = 16


def chain(folder, **kwargs) -> list[StageExecutor]:
    return [StageExecutor(load_stage(folder, a, b, device="cpu"), **kwargs) for a, b in SPLIT]


def alone(stages, prompt, session) -> tuple[list[int], list[torch.Tensor]]:
    tokens, logits, inputs, position = [], [], torch.tensor([prompt]), 0
    for _ in range(NEW_TOKENS):
        for stage in stages:
            inputs = stage.forward(session, position, inputs, last_only=True)
        logits.append(inputs[0, -1])
        position += 1 if tokens else len(prompt)
        tokens.append(int(inputs[0, -1].argmax()))
        inputs = torch.tensor([[tokens[-1]]])
    return tokens, logits


async def batched(stages, prompts, groups: int = 1) -> tuple[list[list[int]], list[StepQueue]]:
    """Every session a task of its own, all submitting through the stages' queues at once."""
    queues = [StepQueue(stage, groups=groups) for stage in stages]

    async def session(index, prompt):
        tokens, inputs, position = [], torch.tensor([prompt]), 0
        for _ in range(NEW_TOKENS):
            for queue in queues:
                inputs = await queue.submit(Step(f"s{index}", position, inputs), True)
            position += 1 if tokens else len(prompt)
            tokens.append(int(inputs[0, -1].argmax()))
            inputs = torch.tensor([[tokens[-1]]])
        return tokens

    try:
        return list(await asyncio.gather(*(session(i, p) for i, p in enumerate(prompts)))), queues
    finally:
        for queue in queues:
            queue.close()


@pytest.mark.parametrize("model_type, extra", [("llama", {}), ("qwen2", {}), ("mistral", {"sliding_window": 4})])
def test_sessions_batched_at_every_stage_get_exactly_their_tokens_alone(tmp_path, model_type, extra):
    folder = save_tiny(tmp_path, model_type, **extra)
    expected = [alone(chain(folder), prompt, "alone")[0] for prompt in PROMPTS]
    tokens, queues = asyncio.run(batched(chain(folder), PROMPTS))
    assert tokens == expected
    if model_type != "mistral":                      # sliding windows run one by one
        assert max(q.largest_batch for q in queues) == len(PROMPTS)


def test_two_groups_take_turns_at_the_first_stage_and_every_session_gets_its_tokens_alone(tmp_path):
    folder = save_tiny(tmp_path)
    expected = [alone(chain(folder), prompt, "alone")[0] for prompt in PROMPTS]
    tokens, queues = asyncio.run(batched(chain(folder), PROMPTS, groups=2))
    assert tokens == expected
    first = queues[0]
    assert first.largest_batch == len(PROMPTS) // 2           # a group is half the sessions
    assert first.rounds >= 2 * (NEW_TOKENS - 1)               # the two groups step in turns


def test_batched_logits_are_bit_for_bit_the_alone_logits(tmp_path):
    folder = save_tiny(tmp_path)
    stages = chain(folder)
    references = [alone(chain(folder), prompt, "alone") for prompt in PROMPTS]
    for index, prompt in enumerate(PROMPTS):            # prefills run alone
        inputs = torch.tensor([prompt])
        for stage in stages:
            inputs = stage.forward(f"b{index}", 0, inputs, last_only=True)
    positions = [len(p) for p in PROMPTS]
    inputs = [torch.tensor([[tokens[0]]]) for tokens, _ in references]
    for stage in stages:
        inputs = stage.forward_batch([Step(f"b{i}", positions[i], x) for i, x in enumerate(inputs)])
    for (_, logits), out in zip(references, inputs, strict=True):
        assert torch.equal(out[0, -1], logits[1])          # bit for bit: a near tie never flips


def test_one_bad_step_in_a_batch_fails_alone(tmp_path):
    stage = chain(save_tiny(tmp_path))[0]
    for session in ("a", "b"):
        stage.forward(session, 0, torch.tensor([PROMPT_IDS]))
    n = len(PROMPT_IDS)
    out = stage.forward_batch([Step("a", n, torch.tensor([[3]])), Step("b", n + 5, torch.tensor([[3]])),
                               Step("gone", 7, torch.tensor([[3]]))])
    assert isinstance(out[0], torch.Tensor)
    assert isinstance(out[1], InvalidInput) and out[1].field == "position"
    assert isinstance(out[2], InvalidInput) and out[2].field == "position"
    assert stage.forward("a", n + 1, torch.tensor([[4]])).shape[:2] == (1, 1)       # "a" goes on


def test_past_the_session_and_kv_limits_new_sessions_are_refused_and_running_ones_go_on(tmp_path):
    folder = save_tiny(tmp_path)
    stage = StageExecutor(load_stage(folder, 0, 6, device="cpu"), max_sessions=2)
    stage.forward("a", 0, torch.tensor([PROMPT_IDS]))
    stage.forward("b", 0, torch.tensor([PROMPT_IDS]))
    with pytest.raises(InvalidInput) as full:
        stage.forward("c", 0, torch.tensor([PROMPT_IDS]))
    assert full.value.field == "session"
    assert stage.forward("a", len(PROMPT_IDS), torch.tensor([[5]])).shape[1] == 1

    small = StageExecutor(load_stage(folder, 0, 6, device="cpu"), max_kv_bytes=1)
    small.forward("a", 0, torch.tensor([PROMPT_IDS]))
    with pytest.raises(InvalidInput) as kv:
        small.forward("b", 0, torch.tensor([PROMPT_IDS]))
    assert kv.value.field == "kv_cache"
    assert small.forward("a", len(PROMPT_IDS), torch.tensor([[5]])).shape[1] == 1
