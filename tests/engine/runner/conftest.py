"""Tiny real models (fixed seed, saved as safetensors) for runner tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

TINY = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=6,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
EOS = 255  # rarely the greedy pick of the seeded tiny model, so generations run to max_new_tokens
# What each architecture adds to TINY so that its own model-level features are exercised: sliding
# windows shorter than the prompt, Gemma-2's alternating sliding/full layers and soft-capping,
# Mixtral's experts (4, two per token).
ARCH_EXTRA: dict[str, dict] = {
    "llama": {},
    "mistral": {"sliding_window": 4},
    "qwen2": {},
    "gemma": {"head_dim": 16},
    "gemma2": {"head_dim": 16, "sliding_window": 4, "query_pre_attn_scalar": 16,
               "attn_logit_softcapping": 5.0, "final_logit_softcapping": 3.0},
    "phi3": {},
    "mixtral": {"num_local_experts": 4, "num_experts_per_tok": 2, "sliding_window": 4},
}


def save_tiny(folder: Path, model_type: str = "llama", tied: bool = False, seed: int = 0, **extra) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(model_type, **TINY, tie_word_embeddings=tied, bos_token_id=1,
                                  eos_token_id=EOS, pad_token_id=0, **{**ARCH_EXTRA[model_type], **extra})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # Random init gives near-uniform logits; widen the weights so greedy tokens are well separated.
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.08)
    model.save_pretrained(str(folder))
    return folder


def load_monolithic(folder: Path, quant: str = "fp32"):
    """The whole model, its weights held as a runner holds them at `quant` (engine.runner.quantize)."""
    from transformers import AutoModelForCausalLM

    from engine.runner.quantize import compute_dtype_name, quantize_linears
    from engine.runner.shards import DTYPES

    # transformers picks the attention kernel (sdpa; eager for Gemma-2's soft-capping), as stages do.
    dtype = DTYPES[compute_dtype_name(quant, None)]
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    if quant == "int8":
        model.config._experts_implementation = "eager"      # as load_stage does for int8 experts
    return quantize_linears(model, quant, "cpu").eval()


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_llama_model(tiny_llama):
    return load_monolithic(tiny_llama)


PROMPT_IDS = [5, 17, 33, 99, 4, 8, 200, 3]
