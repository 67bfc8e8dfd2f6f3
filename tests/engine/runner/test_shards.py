"""A stage loads only its own tensors, from transformers' own classes, and refuses what it cannot run."""

from __future__ import annotations

import json

import pytest
import torch

from engine.errors import InvalidInput
from engine.runner.shards import load_stage, parse_dtype, parse_layers
from tests.engine.runner.conftest import save_tiny


def test_a_middle_stage_holds_only_its_layers(tiny_llama):
    stage = load_stage(tiny_llama, 2, 4, device="cpu")
    names = set(stage.state_dict())
    assert names, "the stage has weights"
    assert {name.split(".")[1] for name in names} == {"0", "1"}
    assert all(name.startswith("layers.") for name in names)
    assert stage.embed_tokens is None and stage.lm_head is None and stage.norm is None


def test_end_stages_add_embeddings_or_norm_and_head(tiny_llama):
    first = set(load_stage(tiny_llama, 0, 2, device="cpu").state_dict())
    last = set(load_stage(tiny_llama, 4, 6, device="cpu").state_dict())
    assert "embed_tokens.weight" in first and not any(n.startswith(("norm", "lm_head")) for n in first)
    assert {"norm.weight", "lm_head.weight"} <= last and "embed_tokens.weight" not in last
    assert {n.split(".")[1] for n in first if n.startswith("layers.")} == {"0", "1"}


def test_stage_weights_are_the_checkpoint_tensors(tiny_llama, tiny_llama_model):
    stage = load_stage(tiny_llama, 4, 6, device="cpu")
    reference = tiny_llama_model.state_dict()
    assert torch.equal(stage.layers[1].mlp.down_proj.weight, reference["model.layers.5.mlp.down_proj.weight"])
    assert torch.equal(stage.lm_head.weight, reference["lm_head.weight"])


def test_tied_embeddings_feed_the_last_stage_head(tmp_path):
    folder = save_tiny(tmp_path, tied=True)
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as handle:
        assert "lm_head.weight" not in set(handle.keys())
        embeddings = handle.get_tensor("model.embed_tokens.weight")
    stage = load_stage(folder, 3, 6, device="cpu")
    assert torch.equal(stage.lm_head.weight, embeddings)


def test_progress_reports_bytes_of_this_stage_only(tiny_llama):
    calls: list[tuple[int, int]] = []
    stage = load_stage(tiny_llama, 2, 4, device="cpu", progress=lambda done, total: calls.append((done, total)))
    stage_bytes = sum(t.numel() * t.element_size() for t in stage.state_dict().values())
    assert calls[0] == (0, stage_bytes)
    assert calls[-1] == (stage_bytes, stage_bytes)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    whole = (tiny_llama / "model.safetensors").stat().st_size
    assert stage_bytes < whole / 2


def test_bf16_stage_converts_weights(tiny_llama):
    stage = load_stage(tiny_llama, 0, 1, dtype="bf16", device="cpu")
    assert {p.dtype for p in stage.parameters()} == {torch.bfloat16}


def test_an_architecture_the_runners_cannot_execute_is_named(tmp_path, tiny_llama):
    config = json.loads((tiny_llama / "config.json").read_text())
    config["model_type"] = "gpt2"
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes((tiny_llama / "model.safetensors").read_bytes())
    with pytest.raises(InvalidInput) as error:
        load_stage(tmp_path, 0, 2, device="cpu")
    assert error.value.field == "model_type" and error.value.value == "gpt2"
    assert "runners cannot execute" in str(error.value)
    assert "llama, mistral, qwen2, gemma, gemma2, phi3, mixtral" in str(error.value)


@pytest.mark.parametrize("text", ["3", "a:b", "4:2", "-1:3", "0:0"])
def test_bad_layer_ranges_are_refused(text):
    with pytest.raises(InvalidInput) as error:
        parse_layers(text)
    assert error.value.field == "layers"


def test_layer_range_beyond_the_model_is_refused(tiny_llama):
    with pytest.raises(InvalidInput, match="6 layers"):
        parse_layers("4:7", 6)
    with pytest.raises(InvalidInput):
        load_stage(tiny_llama, 4, 7, device="cpu")


def test_unknown_dtype_is_refused():
    with pytest.raises(InvalidInput) as error:
        parse_dtype("int4")
    assert error.value.field == "dtype"
