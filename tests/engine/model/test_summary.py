"""inspect_model: the exact dict `prismn inspect` prints."""

from __future__ import annotations

import json

import pytest

from engine.errors import InvalidInput
from engine.model import footprint, inspect_model, load_spec


def test_smollm2_bf16_exact():
    assert inspect_model(load_spec("smollm2-135m")) == {
        "name": "smollm2-135m",
        "num_layers": 30,
        "param_count": 134_515_008,
        "layer_param_count": 3_540_096,
        "embedding_param_count": 49_152 * 576,
        "lm_head_param_count": 49_152 * 576,   # tied: the shared matrix, counted once in param_count
        "tied_embeddings": True,
        "device_kind": "cuda",
        "bytes": {
            "per_layer": 3_540_096 * 2,
            "embeddings": 49_152 * 576 * 2,
            "lm_head": 49_152 * 576 * 2,
            "kv_per_token_per_layer": 2 * 3 * 64 * 2,
        },
    }


def test_agrees_with_footprint_for_every_quant():
    spec = load_spec("qwen2.5-7b")
    for quant in ("fp32", "bf16", "fp16", "int8", "int4"):
        report = inspect_model(spec, quant, group_size=64)
        fp = footprint(spec, quant, context=1, batch=1, group_size=64)
        assert report["bytes"]["per_layer"] == fp.layer_bytes
        assert report["bytes"]["embeddings"] == fp.embedding_bytes
        assert report["bytes"]["lm_head"] == fp.lm_head_bytes
        assert report["bytes"]["kv_per_token_per_layer"] == fp.kv_bytes_per_layer
        assert report["param_count"] == fp.param_count


def test_is_plain_json():
    report = inspect_model(load_spec("mixtral-8x7b"), "int4")
    assert json.loads(json.dumps(report)) == report


def test_bad_quant_is_named():
    with pytest.raises(InvalidInput) as err:
        inspect_model(load_spec("smollm2"), "q4_k_m")
    assert (err.value.field, err.value.value) == ("quant", "q4_k_m")
