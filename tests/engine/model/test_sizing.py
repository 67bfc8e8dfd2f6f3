"""Bytes per quantisation, KV cache and workspace, checked against numbers worked out by hand."""

from __future__ import annotations

import pytest

from engine.errors import InvalidInput
from engine.model import QUANTS, footprint, load_spec
from engine.model.sizing import (
    activation_bytes,
    compute_dtype_for,
    int4_group_size,
    layer_bytes,
    matrix_bytes,
)
from engine.model.spec import spec_from_config

# A small Llama: hidden 64, 4 heads of 16 (2 KV heads), MLP 160, vocab 100, 2 layers.
# Its Linear matrices (rows = out_features x cols = in_features):
#   q 64x64, k 32x64, v 32x64, o 64x64, gate 160x64, up 160x64, down 64x160
#   = 43,008 weights in 576 rows; 2 RMSNorms of 64 = 128 kept parameters.
SMALL = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 160,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_hidden_layers": 2,
    "vocab_size": 100,
}


@pytest.fixture
def small():
    return spec_from_config(SMALL, name="small")


@pytest.mark.parametrize(
    ("quant", "device_kind", "expected"),
    [
        ("fp32", "cuda", 43_136 * 4),
        ("bf16", "cuda", 43_136 * 2),
        ("fp16", "cpu", 43_136 * 2),
        # 1 B per weight + an fp32 scale and an int8 zero point per row + norms in bf16
        ("int8", "cuda", 43_008 + 576 * 5 + 128 * 2),
        ("int8", "cpu", 43_008 + 576 * 5 + 128 * 2),
        # CPU: int4 values in whole bytes; groups of 64 on 64-wide rows (512 rows, 1 group each) and of
        # 32 on down's 160-wide rows (64 rows x 5 groups); a bf16 scale + an int8 zero per group
        ("int4", "cpu", 43_008 + (512 + 320) * 3 + 128 * 2),
        # CUDA (tinygemm): rows padded to 1024 input features, two weights per byte, bf16 scale + zero
        # per group: 512 rows x (512 B + 16 groups x 4 B), 64 rows x (512 B + 32 groups x 4 B)
        ("int4", "cuda", 512 * (512 + 16 * 4) + 64 * (512 + 32 * 4) + 128 * 2),
    ],
)
def test_layer_bytes_per_quant_and_device_kind(small, quant, device_kind, expected):
    assert footprint(small, quant, device_kind=device_kind).layer_bytes == expected


@pytest.mark.parametrize(
    ("cols", "group_size", "group"),
    [(4096, 128, 128), (576, 128, 64), (160, 128, 32), (14336, 128, 128), (100, 128, None), (64, 16, 16),
     (48, 48, 48), (64, 48, None)],
)
def test_int4_group_is_the_largest_halving_that_divides_the_row(cols, group_size, group):
    assert int4_group_size(cols, group_size) == group


def test_a_matrix_no_int4_group_divides_stays_in_the_compute_dtype():
    assert matrix_bytes(3, 100, "int4", device_kind="cpu") == 3 * 100 * 2
    assert matrix_bytes(3, 100, "int4", device_kind="cuda", compute_dtype="fp32") == 3 * 100 * 4


def test_smaller_int4_groups_cost_more(small):
    sizes = [footprint(small, "int4", group_size=g, device_kind="cpu").layer_bytes for g in (16, 32, 64)]
    assert sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize(
    ("quant", "head"),
    [("fp32", 25_600), ("bf16", 12_800), ("int8", 6_400 + 100 * 5), ("int4", 6_400 + 100 * 3)],
)
def test_the_head_is_quantised_and_the_embedding_kept_in_the_compute_dtype(small, quant, head):
    fp = footprint(small, quant, device_kind="cpu")
    assert fp.lm_head_bytes == head
    assert fp.embedding_bytes == 6_400 * (4 if quant == "fp32" else 2)
    assert fp.final_norm_bytes == 64 * (4 if quant == "fp32" else 2)


def test_mixture_of_experts_keeps_experts_in_the_compute_dtype_at_int4_only():
    spec = load_spec("mixtral-8x7b")
    bf16, int8, int4 = (footprint(spec, q).layer_bytes for q in ("bf16", "int8", "int4"))
    assert int8 < 0.6 * bf16
    assert 0.9 * bf16 < int4 < bf16          # attention is quantised, the experts are not


def test_a_bad_device_kind_is_named():
    with pytest.raises(InvalidInput) as err:
        footprint(spec_from_config(SMALL), "int4", device_kind="tpu")
    assert (err.value.field, err.value.value) == ("device_kind", "tpu")


def test_kv_cache_is_two_tensors_of_kv_heads_by_head_dim_per_token(small):
    # 2 (K and V) * 2 KV heads * 16 head_dim * 2 bytes (bf16) * 10 tokens * 3 sequences
    assert footprint(small, "bf16", context=10, batch=3).kv_bytes_per_layer == 3_840
    # int4 weights still compute (and cache) in bf16
    assert footprint(small, "int4", context=10, batch=3).kv_bytes_per_layer == 3_840
    assert footprint(small, "fp32", context=10, batch=3).kv_bytes_per_layer == 7_680
    assert footprint(small, "int8", context=10, batch=3, compute_dtype="fp32").kv_bytes_per_layer == 7_680


def test_kv_cache_of_llama_3_1_8b_is_128_kib_per_token():
    fp = footprint(load_spec("llama-3.1-8b"), "bf16", context=1, batch=1)
    assert fp.kv_bytes_per_layer * fp.num_layers == 128 * 1024


def test_activation_workspace(small):
    # 10 tokens: residual + normed copy 10*2*64 = 1280; MLP gate+up 10*2*160 = 3200 beats
    # attention 10*((2*4 + 2*2)*16 + 10) = 2020; bf16 doubles it.
    assert activation_bytes(small, context=10, batch=1, compute_dtype="bf16") == (1280 + 3200) * 2
    assert footprint(small, "bf16", context=10).activation_bytes == 8_960
    # At long context the per-head score matrix (context^2) dominates.
    long = 10_000
    assert activation_bytes(small, context=long, batch=1, compute_dtype="bf16") == (
        long * 2 * 64 + long * ((2 * 4 + 2 * 2) * 16 + long)
    ) * 2


def test_compute_dtype_follows_the_weights_unless_given():
    assert compute_dtype_for("fp32") == "fp32"
    assert compute_dtype_for("fp16") == "fp16"
    assert [compute_dtype_for(q) for q in ("bf16", "int8", "int4")] == ["bf16"] * 3
    assert compute_dtype_for("int4", "fp16") == "fp16"


def test_kept_tensors_use_the_compute_dtype(small):
    # norms in fp32 instead of bf16: 128 more parameters x 2 more bytes
    assert layer_bytes(small, "int8", compute_dtype="fp32") == layer_bytes(small, "int8") + 128 * 2


def test_mixtral_router_stays_in_the_compute_dtype():
    spec = load_spec("mixtral-8x7b")
    router_and_norms = (4096 * 8 + 2 * 4096) * 2
    weights = 4096 * 4096 * 2 + 1024 * 4096 * 2 + 8 * 3 * 4096 * 14336
    rows = 4096 * 2 + 1024 * 2 + 8 * (14336 * 2 + 4096)
    assert footprint(spec, "int8").layer_bytes == weights + rows * 5 + router_and_norms


def test_flops_count_active_weights_only():
    spec = load_spec("mixtral-8x7b")
    fp = footprint(spec)
    expert = 3 * 4096 * 14336
    dense_part = 2 * 4096 * 4096 + 2 * 4096 * 1024 + 4096 * 8 + 2 * 4096
    assert fp.layer_flops_per_token == 2 * (dense_part + 2 * expert)
    assert fp.head_flops_per_token == 2 * 32_000 * 4096


def test_bf16_model_bytes_are_two_per_parameter():
    for name in ("llama-3.1-8b", "qwen2.5-7b", "mixtral-8x7b"):
        fp = footprint(load_spec(name), "bf16")
        total = fp.num_layers * fp.layer_bytes + fp.embedding_bytes + fp.final_norm_bytes + fp.lm_head_bytes
        assert total == 2 * fp.param_count


def test_int4_llama_8b_is_about_a_quarter_of_bf16():
    spec = load_spec("llama-3.1-8b")
    ratio = footprint(spec, "int4").layer_bytes / footprint(spec, "bf16").layer_bytes
    assert 0.25 < ratio < 0.27      # 4.25 bits per weight with groups of 128 -> 0.266


class TestTiedHeadThroughStageBytes:
    def test_one_stage_holds_the_shared_matrix_once(self):
        fp = footprint(load_spec("llama-3.2-1b"), "bf16", context=1024)
        base = 16 * (fp.layer_bytes + fp.kv_bytes_per_layer) + fp.activation_bytes
        assert fp.stage_bytes(16, first=True, last=True) == base + fp.embedding_bytes + fp.final_norm_bytes

    def test_a_separate_last_stage_needs_its_own_copy(self):
        fp = footprint(load_spec("llama-3.2-1b"), "bf16", context=1024)
        last = fp.stage_bytes(8, first=False, last=True)
        middle = fp.stage_bytes(8, first=False, last=False)
        assert last - middle == fp.final_norm_bytes + fp.lm_head_bytes
        assert fp.lm_head_bytes == fp.embedding_bytes == 128_256 * 2048 * 2

    def test_an_untied_model_always_adds_the_head(self):
        fp = footprint(load_spec("llama-3.1-8b"), "bf16")
        single = fp.stage_bytes(32, first=True, last=True)
        base = 32 * (fp.layer_bytes + fp.kv_bytes_per_layer) + fp.activation_bytes
        assert single == base + fp.embedding_bytes + fp.final_norm_bytes + fp.lm_head_bytes


def test_footprint_carries_the_model_facts(small):
    fp = footprint(small, "int8", safety_margin=0.2)
    assert (fp.name, fp.num_layers, fp.quant, fp.safety_margin) == ("small", 2, "int8", 0.2)
    assert fp.param_count == 2 * 43_136 + 2 * 6_400 + 64


@pytest.mark.parametrize(
    ("kwargs", "field", "value"),
    [
        ({"quant": "int3"}, "quant", "int3"),
        ({"quant": "BF16"}, "quant", "BF16"),
        ({"context": 0}, "context", 0),
        ({"context": 2.5}, "context", 2.5),
        ({"batch": -1}, "batch", -1),
        ({"group_size": 0}, "group_size", 0),
        ({"safety_margin": 1.0}, "safety_margin", 1.0),
        ({"safety_margin": -0.1}, "safety_margin", -0.1),
        ({"safety_margin": "0.1"}, "safety_margin", "0.1"),
        ({"compute_dtype": "int8"}, "compute_dtype", "int8"),
    ],
)
def test_bad_inputs_name_field_and_value(small, kwargs, field, value):
    with pytest.raises(InvalidInput) as err:
        footprint(small, **kwargs)
    assert err.value.field == field
    assert err.value.value == value
    assert field in str(err.value) and repr(value) in str(err.value)


def test_quants_are_the_agreed_five():
    assert QUANTS == ("fp32", "bf16", "fp16", "int8", "int4")


def test_a_swarm_with_any_cpu_peer_is_sized_as_cpu():
    from engine.model.sizing import device_kind_for

    assert device_kind_for(["H100", "A10"]) == "cuda"
    assert device_kind_for(["H100", None]) == "cpu"
    spec = load_spec("llama-3.1-8b")
    assert footprint(spec, "int4", device_kind="cpu").layer_bytes > 1.8 * footprint(spec, "int4").layer_bytes
