"""Our counts equal the parameters of real transformers models built from tiny configs.

Models are built on the `meta` device: shapes without storage, so this stays fast.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from engine.model.params import param_counts
from engine.model.spec import spec_from_config

TINY = dict(
    hidden_size=64,
    intermediate_size=96,
    num_attention_heads=4,
    num_key_value_heads=2,
    num_hidden_layers=2,
    vocab_size=128,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)

CASES = {
    "llama": dict(model_type="llama"),
    "llama-tied-biased": dict(model_type="llama", tie_word_embeddings=True, attention_bias=True, mlp_bias=True),
    "mistral": dict(model_type="mistral"),
    "qwen2": dict(model_type="qwen2"),
    "qwen2-tied": dict(model_type="qwen2", tie_word_embeddings=True),
    "gemma": dict(model_type="gemma", head_dim=32),
    "gemma2": dict(model_type="gemma2", head_dim=32),
    "phi3": dict(model_type="phi3"),
    "mixtral": dict(model_type="mixtral", num_local_experts=4, num_experts_per_tok=2),
}


def _build(overrides):
    values = {**TINY, **overrides}
    config = AutoConfig.for_model(values.pop("model_type"), **values)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return config, model


@pytest.mark.parametrize("case", sorted(CASES))
def test_counts_match_a_real_transformers_model(case):
    config, model = _build(CASES[case])
    spec = spec_from_config(config.to_dict(), name=case)
    counts = param_counts(spec)

    # model.parameters() yields a tied tensor once, like our total
    assert counts.total == sum(p.numel() for p in model.parameters())
    assert counts.layer == sum(p.numel() for p in model.model.layers[0].parameters())
    assert counts.embedding == model.model.embed_tokens.weight.numel()
    assert counts.final_norm == model.model.norm.weight.numel()
    assert counts.lm_head == model.lm_head.weight.numel()
    assert spec.tied_embeddings == (model.lm_head.weight is model.model.embed_tokens.weight)
