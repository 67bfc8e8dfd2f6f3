"""Exact parameter counts: every preset matches its published checkpoint to the parameter."""

from __future__ import annotations

import pytest

from engine.model import list_presets, load_spec
from engine.model.params import param_counts

# Totals of the real checkpoints (sum of tensor sizes in their safetensors; tied heads once).
CHECKPOINT_PARAMS = {
    "smollm2-135m": 134_515_008,
    "llama-3.2-1b": 1_235_814_400,
    "llama-3.1-8b": 8_030_261_248,
    "llama-3.1-70b": 70_553_706_496,
    "mistral-7b": 7_241_732_096,
    "qwen2.5-7b": 7_615_616_512,
    "mixtral-8x7b": 46_702_792_704,
    "gemma-2b": 2_506_172_416,
    "gemma2-9b": 9_241_705_984,
    "phi-3-mini": 3_821_079_552,
}


def test_every_preset_has_a_checkpoint_count():
    assert sorted(CHECKPOINT_PARAMS) == list_presets()


@pytest.mark.parametrize("name", sorted(CHECKPOINT_PARAMS))
def test_preset_total_matches_the_real_checkpoint(name):
    assert param_counts(load_spec(name)).total == CHECKPOINT_PARAMS[name]


def test_llama_3_1_8b_parts():
    counts = param_counts(load_spec("llama-3.1-8b"))
    # q 4096^2 + k,v 4096*1024 each + o 4096^2 + 3 * 4096 * 14336 + 2 norms of 4096
    assert counts.layer == 218_112_000
    assert counts.layer_kept == 8192
    assert counts.embedding == counts.lm_head == 128_256 * 4096
    assert counts.final_norm == 4096
    assert counts.total == 32 * counts.layer + 2 * counts.embedding + 4096


def test_a_tied_head_is_counted_once_but_still_sized():
    counts = param_counts(load_spec("llama-3.2-1b"))
    assert counts.lm_head == counts.embedding == 128_256 * 2048
    assert counts.total == 16 * counts.layer + counts.embedding + counts.final_norm


def test_qwen2_layers_carry_qkv_biases():
    counts = param_counts(load_spec("qwen2.5-7b"))
    # 2 norms of 3584 plus q (28 heads) and k, v (4 heads each) biases of 128 per head
    assert counts.layer_kept == 2 * 3584 + (28 + 2 * 4) * 128


def test_gemma2_has_four_norms_per_layer():
    counts = param_counts(load_spec("gemma2-9b"))
    assert counts.layer_kept == 4 * 3584


def test_mixtral_counts_every_expert_but_a_token_uses_two():
    counts = param_counts(load_spec("mixtral-8x7b"))
    expert = 3 * 4096 * 14336
    attention = 2 * 4096 * 4096 + 2 * 4096 * 1024
    router = 4096 * 8
    norms = 2 * 4096
    assert counts.layer == attention + 8 * expert + router + norms
    assert counts.layer_active == attention + 2 * expert + router + norms
    # Mixtral-8x7B is known as a ~12.9B-active model
    assert 12_800_000_000 < counts.active_total < 13_000_000_000
