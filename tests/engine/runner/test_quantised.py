"""int8 / int4 weight-only stages: the planner sizes what a runner really holds, and a quantised
pipeline of runner processes gives the tokens of the monolithic model quantised the same way."""

from __future__ import annotations

import asyncio

import pytest
import torch

from engine.errors import InvalidInput
from engine.generate import greedy_generate, open_pipeline, start_runners, stop_runners
from engine.model import QUANTS, footprint, load_spec
from engine.model.source import resolve_model
from engine.runner.quantize import module_weight_bytes
from engine.runner.shards import load_stage
from tests.engine.runner.conftest import EOS, PROMPT_IDS, load_monolithic

SPLIT = [(0, 2), (2, 4), (4, 6)]
# SmolLM2's rules per stage kind: embeddings + layers, layers only, layers + final norm + (tied) head.
SMOLLM2_STAGES = [(0, 2), (14, 16), (28, 30)]


@pytest.mark.slow
@pytest.mark.parametrize("quant", QUANTS)
def test_planned_weight_bytes_match_what_a_smollm2_stage_holds(quant):
    source = resolve_model("smollm2")
    planned = footprint(load_spec("smollm2-135m"), quant, device_kind="cpu")
    for start, end in SMOLLM2_STAGES:
        stage = load_stage(source.folder, start, end, device="cpu", quant=quant)
        measured = module_weight_bytes(stage)
        expected = planned.stage_weight_bytes(end - start, first=start == 0, last=end == 30)
        assert abs(expected - measured) <= 0.10 * measured, (quant, start, end, expected, measured)


def test_int8_and_int4_stages_hold_quantised_linears_and_a_float_embedding(tiny_llama):
    int8 = load_stage(tiny_llama, 0, 2, device="cpu", quant="int8")
    int4 = load_stage(tiny_llama, 0, 2, device="cpu", quant="int4")
    assert type(int8.layers[0].mlp.down_proj.weight).__name__ == "Int8Tensor"
    assert type(int4.layers[0].mlp.down_proj.weight).__name__ == "IntxUnpackedToInt8Tensor"
    assert int8.embed_tokens.weight.dtype == int4.embed_tokens.weight.dtype == torch.bfloat16
    bf16 = load_stage(tiny_llama, 0, 2, device="cpu", quant="bf16")
    layer_bytes = [module_weight_bytes(s.layers) for s in (bf16, int8, int4)]
    assert layer_bytes[1] < 0.6 * layer_bytes[0] and layer_bytes[2] < 0.6 * layer_bytes[0]


@pytest.mark.parametrize(("quant", "dtype", "field"), [("int3", None, "quant"), ("bf16", "fp32", "dtype"),
                                                       ("int8", "int4", "dtype")])
def test_a_quant_the_runner_cannot_hold_is_named(tiny_llama, quant, dtype, field):
    with pytest.raises(InvalidInput) as error:
        load_stage(tiny_llama, 0, 2, dtype, device="cpu", quant=quant)
    assert (error.value.field, error.value.value) == (field, quant if field == "quant" else dtype)


async def _generate(runners):
    client = await open_pipeline("tcp", runners)
    try:
        return (await greedy_generate(client, PROMPT_IDS, 10, {EOS}, session_id="q"))["token_ids"]
    finally:
        await client.close()


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["int8", "int4"])
def test_a_quantised_pipeline_of_processes_equals_the_monolithic_model_quantised_alike(tiny_llama, quant):
    runners = start_runners(str(tiny_llama), SPLIT, "tcp", dtype=None, quant=quant, ready_timeout_s=120,
                            extra_args=["--threads", "1"])
    try:
        tokens = asyncio.run(_generate(runners))
        ready = [r.ready for r in runners]
    finally:
        stop_runners(runners)
    planned = footprint(load_spec(str(tiny_llama)), quant, device_kind="cpu")
    for (start, end), record in zip(SPLIT, ready, strict=True):
        assert record["quant"] == quant and record["dtype"] == "bf16"
        memory = record["memory"]
        assert memory["weight_bytes"] == planned.stage_weight_bytes(end - start, first=start == 0, last=end == 6)
        assert memory["kv_cache_bytes"] == 0 and memory["kv_cache_bytes_per_token"] == 2 * 2 * 16 * 2 * 2
    model = load_monolithic(tiny_llama, quant)
    ids = torch.tensor([PROMPT_IDS])
    assert tokens == model.generate(ids, max_new_tokens=10, do_sample=False)[0, len(PROMPT_IDS):].tolist()
