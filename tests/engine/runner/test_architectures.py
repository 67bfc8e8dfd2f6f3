"""Every architecture the planner sizes runs as 3 runner processes and computes what the monolithic
transformers model computes: logits within 1e-5 in fp32 and identical greedy tokens.

One tiny random model per architecture (fixed seed, saved as a HF folder with safetensors), one set
of three runner processes each, over TCP on loopback. The tiny configs exercise each family's own
model-level features (see ARCH_EXTRA): sliding windows shorter than the prompt, Gemma's scaled
embeddings, Gemma-2's alternating sliding/full layers with attention and final-logit soft-capping,
Phi-3's fused projections and Mixtral's experts.
"""

from __future__ import annotations

import asyncio

import pytest
import torch

from engine.generate import greedy_generate, open_pipeline, start_runners, stop_runners
from engine.model.architectures import EXECUTABLE_MODEL_TYPES
from tests.engine.runner.conftest import ARCH_EXTRA, EOS, PROMPT_IDS, load_monolithic, save_tiny

pytestmark = pytest.mark.slow
SPLIT = [(0, 2), (2, 4), (4, 6)]
NEW_TOKENS = 10


def test_the_tiny_configs_cover_every_executable_architecture():
    assert set(ARCH_EXTRA) == set(EXECUTABLE_MODEL_TYPES)


async def _pipeline(runners):
    client = await open_pipeline("tcp", runners)
    try:
        logits = await client.forward("logits", 0, torch.tensor([PROMPT_IDS]), want="logits", all_positions=True)
        await client.end_session("logits")
        generated = await greedy_generate(client, PROMPT_IDS, NEW_TOKENS, {EOS}, session_id="gen")
        return logits, generated["token_ids"]
    finally:
        await client.close()


@pytest.mark.parametrize("model_type", EXECUTABLE_MODEL_TYPES)
def test_three_runner_processes_equal_the_monolithic_model(tmp_path, model_type):
    folder = save_tiny(tmp_path, model_type)
    runners = start_runners(str(folder), SPLIT, "tcp", ready_timeout_s=120, extra_args=["--threads", "1"])
    try:
        assert [r.ready["layers"] for r in runners] == [list(s) for s in SPLIT]
        logits, tokens = asyncio.run(_pipeline(runners))
    finally:
        stop_runners(runners)
    model = load_monolithic(folder)
    ids = torch.tensor([PROMPT_IDS])
    with torch.no_grad():
        want_logits = model(ids).logits
    want_tokens = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)[0, len(PROMPT_IDS):].tolist()
    assert logits.shape == want_logits.shape
    assert (logits - want_logits).abs().max().item() <= 1e-5
    assert tokens == want_tokens
