"""ModelSpec from config dicts: family defaults, head_dim, biases, and precise rejections."""

from __future__ import annotations

import pytest

from engine.errors import InvalidInput
from engine.model.spec import ARCHITECTURES, spec_from_config

BASE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_hidden_layers": 3,
    "vocab_size": 100,
}


def config(**overrides):
    return {"model_type": "llama", **BASE, **overrides}


def test_reads_shape_fields():
    spec = spec_from_config(config(torch_dtype="bfloat16"), name="tiny")
    assert (spec.name, spec.architecture, spec.num_layers, spec.hidden_size) == ("tiny", "llama", 3, 64)
    assert (spec.intermediate_size, spec.num_attention_heads, spec.num_kv_heads) == (128, 4, 2)
    assert (spec.head_dim, spec.vocab_size, spec.torch_dtype) == (16, 100, "bfloat16")
    assert not spec.tied_embeddings and not spec.is_moe


def test_explicit_head_dim_wins_over_hidden_over_heads():
    assert spec_from_config(config(head_dim=32)).head_dim == 32
    assert spec_from_config(config(head_dim=None)).head_dim == 16


def test_missing_kv_heads_means_multi_head_attention():
    cfg = config()
    del cfg["num_key_value_heads"]
    assert spec_from_config(cfg).num_kv_heads == 4


def test_null_kv_heads_means_multi_head_attention_as_transformers_reads_it():
    # Configs written by older tools say "num_key_value_heads": null; LlamaConfig maps it to
    # num_attention_heads, so rejecting it refused a config AutoConfig loads.
    assert spec_from_config(config(num_key_value_heads=None)).num_kv_heads == 4


def test_gemma_ties_embeddings_by_default_llama_does_not():
    assert spec_from_config(config(model_type="gemma")).tied_embeddings
    assert spec_from_config(config(model_type="gemma2")).tied_embeddings
    assert not spec_from_config(config(model_type="gemma", tie_word_embeddings=False)).tied_embeddings
    assert not spec_from_config(config()).tied_embeddings


def test_qwen2_always_has_qkv_bias_and_no_o_bias():
    spec = spec_from_config(config(model_type="qwen2"))
    assert spec.qkv_bias and not spec.o_bias


def test_llama_attention_bias_covers_all_four_projections():
    spec = spec_from_config(config(attention_bias=True, mlp_bias=True))
    assert spec.qkv_bias and spec.o_bias and spec.mlp_bias


def test_mixtral_experts():
    spec = spec_from_config(config(model_type="mixtral", num_local_experts=8, num_experts_per_tok=2))
    assert spec.is_moe and (spec.num_local_experts, spec.num_experts_per_tok) == (8, 2)


def test_transformers_5_dtype_key_is_read():
    assert spec_from_config(config(dtype="float16")).torch_dtype == "float16"


def test_name_defaults_to_the_config_path():
    assert spec_from_config(config(_name_or_path="org/model")).name == "org/model"


def test_an_architecture_the_runners_cannot_execute_is_refused_naming_the_executable_ones():
    with pytest.raises(InvalidInput) as err:
        spec_from_config(config(model_type="gpt2"))
    assert err.value.field == "model_type" and err.value.value == "gpt2"
    assert "runners cannot execute" in str(err.value)
    for arch in ARCHITECTURES:
        assert arch in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "field", "value"),
    [
        ({"hidden_size": 0}, "config.hidden_size", 0),
        ({"vocab_size": "100"}, "config.vocab_size", "100"),
        ({"num_hidden_layers": True}, "config.num_hidden_layers", True),
        ({"num_key_value_heads": 3}, "config.num_key_value_heads", 3),
        ({"hidden_size": 66}, "config.hidden_size", 66),
        ({"tie_word_embeddings": "yes"}, "config.tie_word_embeddings", "yes"),
        (
            {"model_type": "mixtral", "num_local_experts": 2, "num_experts_per_tok": 3},
            "config.num_experts_per_tok",
            3,
        ),
    ],
)
def test_bad_config_values_name_field_and_value(overrides, field, value):
    with pytest.raises(InvalidInput) as err:
        spec_from_config(config(**overrides))
    assert (err.value.field, err.value.value) == (field, value)


def test_missing_field_is_named():
    cfg = config()
    del cfg["vocab_size"]
    with pytest.raises(InvalidInput) as err:
        spec_from_config(cfg)
    assert err.value.field == "config.vocab_size" and err.value.value is None


def test_every_preset_the_app_offers_is_an_architecture_the_runners_execute():
    from engine.model import list_presets, load_spec
    from engine.model.architectures import EXECUTABLE_MODEL_TYPES

    architectures = {load_spec(name).architecture for name in list_presets()}
    assert architectures == set(EXECUTABLE_MODEL_TYPES)


def test_a_size_beyond_any_real_model_is_refused_naming_the_field():
    with pytest.raises(InvalidInput) as caught:
        spec_from_config(config(num_hidden_layers=10**60))
    assert caught.value.field == "config.num_hidden_layers"
