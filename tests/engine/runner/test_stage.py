"""Stages chained in one process compute exactly what the monolithic model computes."""

from __future__ import annotations

import pytest
import torch

from engine.errors import InvalidInput
from engine.runner.shards import load_stage
from engine.runner.stage import StageExecutor
from tests.engine.runner.conftest import EOS, PROMPT_IDS, load_monolithic, save_tiny

SPLIT = [(0, 2), (2, 4), (4, 6)]


def executors(folder, split=SPLIT, **kwargs) -> list[StageExecutor]:
    return [StageExecutor(load_stage(folder, a, b, device="cpu"), **kwargs) for a, b in split]


def run_chain(stages, session, position, inputs, last_only=False):
    for stage in stages:
        inputs = stage.forward(session, position, inputs, last_only=last_only)
    return inputs


def greedy(stages, prompt, max_new_tokens, session="g"):
    tokens, inputs, position = [], torch.tensor([prompt]), 0
    for _ in range(max_new_tokens):
        logits = run_chain(stages, session, position, inputs, last_only=True)
        position += inputs.shape[1]
        tokens.append(int(logits[0, -1].argmax()))
        if tokens[-1] == EOS:
            break
        inputs = torch.tensor([[tokens[-1]]])
    return tokens


@pytest.mark.parametrize("model_type, tied, extra", [
    ("llama", False, {}), ("llama", True, {}), ("qwen2", False, {}), ("mistral", False, {"sliding_window": 4}),
])
def test_pipelined_logits_and_tokens_equal_the_monolithic_model(tmp_path, model_type, tied, extra):
    folder = save_tiny(tmp_path, model_type, tied, **extra)
    model = load_monolithic(folder)
    ids = torch.tensor([PROMPT_IDS])
    with torch.no_grad():
        expected = model(ids).logits
    stages = executors(folder)
    assert (run_chain(stages, "s", 0, ids) - expected).abs().max().item() <= 1e-5
    reference = model.generate(ids, max_new_tokens=12, do_sample=False)[0, len(PROMPT_IDS):].tolist()
    assert greedy(stages, PROMPT_IDS, 12) == reference


def test_two_interleaved_sessions_match_separate_runs(tiny_llama):
    stages = executors(tiny_llama)
    other_prompt = [9, 8, 7, 6, 5]
    alone_a = greedy(stages, PROMPT_IDS, 8, session="alone-a")
    alone_b = greedy(stages, other_prompt, 8, session="alone-b")
    state = {"a": (torch.tensor([PROMPT_IDS]), 0, []), "b": (torch.tensor([other_prompt]), 0, [])}
    for _ in range(8):
        for session in ("a", "b"):
            inputs, position, tokens = state[session]
            logits = run_chain(stages, session, position, inputs, last_only=True)
            tokens.append(int(logits[0, -1].argmax()))
            state[session] = (torch.tensor([[tokens[-1]]]), position + inputs.shape[1], tokens)
    assert state["a"][2] == alone_a and state["b"][2] == alone_b
    assert alone_a != alone_b


def test_ending_a_session_frees_its_cache(tiny_llama):
    stage = executors(tiny_llama, [(0, 6)])[0]
    stage.forward("x", 0, torch.tensor([PROMPT_IDS]))
    assert stage.sessions() == ["x"]
    assert stage.end_session("x") and stage.sessions() == []
    assert not stage.end_session("x")


def test_idle_sessions_expire(tiny_llama):
    stage = executors(tiny_llama, [(0, 6)], idle_timeout_s=5.0)[0]
    stage.forward("old", 0, torch.tensor([PROMPT_IDS]))
    import time

    assert stage.expire_idle(now_s=time.monotonic() + 1.0) == []
    assert stage.expire_idle(now_s=time.monotonic() + 10.0) == ["old"]
    assert stage.sessions() == []


def test_a_step_at_the_wrong_position_is_refused(tiny_llama):
    stage = executors(tiny_llama, [(0, 6)])[0]
    with pytest.raises(InvalidInput, match="unknown here"):
        stage.forward("new", 3, torch.tensor([[1]]))
    stage.forward("s", 0, torch.tensor([PROMPT_IDS]))
    with pytest.raises(InvalidInput) as error:
        stage.forward("s", 2, torch.tensor([[1]]))
    assert error.value.field == "position" and "expects position 8" in str(error.value)


def test_wrong_inputs_are_refused(tiny_llama):
    first, middle = executors(tiny_llama, [(0, 2), (2, 4)])
    with pytest.raises(InvalidInput, match="token ids"):
        first.forward("s", 0, torch.zeros(1, 3, 64))
    with pytest.raises(InvalidInput, match="0..255"):
        first.forward("s", 0, torch.tensor([[300]]))
    with pytest.raises(InvalidInput, match=r"\[1, T, 64\]"):
        middle.forward("s", 0, torch.zeros(1, 3, 32))
    assert first.sessions() == [] and middle.sessions() == []


def test_steps_beyond_the_context_are_refused(tiny_llama):
    stage = executors(tiny_llama, [(0, 6)])[0]
    with pytest.raises(InvalidInput) as error:
        stage.forward("long", 0, torch.ones(1, 257, dtype=torch.int64))
    assert error.value.field == "position" and "256 positions" in str(error.value)
