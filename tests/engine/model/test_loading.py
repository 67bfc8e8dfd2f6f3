"""load_spec finds presets, config files of any name, checkpoint folders, and fails clearly."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pytest

from engine.errors import InvalidInput, UnknownModel
from engine.model import list_presets, load_spec
from engine.model.loading import PRESETS_DIR
from engine.paths import REPO_ROOT

REQUIRED_PRESETS = {
    "smollm2-135m", "llama-3.2-1b", "llama-3.1-8b", "llama-3.1-70b",
    "mistral-7b", "qwen2.5-7b", "mixtral-8x7b",
}


def test_presets_include_the_agreed_ones_sorted():
    presets = list_presets()
    assert REQUIRED_PRESETS <= set(presets)
    assert presets == sorted(presets)


@pytest.mark.parametrize(
    ("model", "preset"),
    [
        ("llama-3.1-8b", "llama-3.1-8b"),
        ("Llama-3.1-8B", "llama-3.1-8b"),
        ("smollm2", "smollm2-135m"),
        ("SmolLM2", "smollm2-135m"),
        ("mixtral", "mixtral-8x7b"),
        ("qwen2.5", "qwen2.5-7b"),
        ("llama-3.2", "llama-3.2-1b"),
        ("gemma", "gemma-2b"),
    ],
)
def test_preset_names_are_case_insensitive_and_may_drop_the_size(model, preset):
    spec = load_spec(model)
    assert spec.name == preset


def test_an_ambiguous_preset_prefix_lists_the_candidates():
    with pytest.raises(UnknownModel) as err:
        load_spec("llama-3.1")
    assert "llama-3.1-8b" in str(err.value) and "llama-3.1-70b" in str(err.value)


def test_a_config_file_of_any_name(tmp_path):
    path = tmp_path / "my model.json"
    shutil.copy(PRESETS_DIR / "qwen2.5-7b.json", path)
    spec = load_spec(str(path))
    assert spec.name == "my model" and spec.architecture == "qwen2"
    assert spec == dataclasses.replace(load_spec("qwen2.5-7b"), name="my model")


def test_a_config_file_saved_with_a_utf8_bom_is_read(tmp_path):
    path = tmp_path / "windows.json"
    path.write_bytes(b"\xef\xbb\xbf" + (PRESETS_DIR / "qwen2.5-7b.json").read_bytes())
    assert load_spec(str(path)) == dataclasses.replace(load_spec("qwen2.5-7b"), name="windows")


def test_a_folder_holding_config_json_is_named_after_the_folder(tmp_path):
    folder = tmp_path / "Mistral-7B-v0.1"
    folder.mkdir()
    shutil.copy(PRESETS_DIR / "mistral-7b.json", folder / "config.json")
    from_folder = load_spec(str(folder))
    from_file = load_spec(str(folder / "config.json"))
    assert from_folder.name == from_file.name == "Mistral-7B-v0.1"
    assert from_folder.num_layers == 32 and from_folder.architecture == "mistral"


@pytest.mark.parametrize("name", ["smollm2", "llama"])
def test_a_local_folder_wins_over_a_shortened_preset_name(tmp_path, monkeypatch, name):
    # ./smollm2 holding another model was sized as the smollm2-135m preset; ./llama was refused
    # as an ambiguous preset prefix.
    (tmp_path / name).mkdir()
    shutil.copy(PRESETS_DIR / "mistral-7b.json", tmp_path / name / "config.json")
    monkeypatch.chdir(tmp_path)
    spec = load_spec(name)
    assert spec.name == name and spec.architecture == "mistral" and spec.num_layers == 32


def test_a_folder_without_config_json(tmp_path):
    with pytest.raises(UnknownModel) as err:
        load_spec(str(tmp_path))
    assert err.value.value == str(tmp_path) and "config.json" in str(err.value)


def test_a_file_that_is_not_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(InvalidInput) as err:
        load_spec(str(path))
    assert err.value.field == "model" and "not valid JSON" in str(err.value)


def test_a_config_of_an_unsupported_architecture(tmp_path):
    path = tmp_path / "gpt2.json"
    path.write_text(json.dumps({"model_type": "gpt2", "n_layer": 12}))
    with pytest.raises(InvalidInput) as err:
        load_spec(str(path))
    assert (err.value.field, err.value.value) == ("model_type", "gpt2")


@pytest.mark.parametrize("model", ["", "   "])
def test_an_empty_name(model):
    with pytest.raises(InvalidInput) as err:
        load_spec(model)
    assert err.value.field == "model"


def test_an_unknown_hub_id_offline_says_what_was_tried():
    # A fresh interpreter with the hub offline: fails fast instead of retrying the network.
    code = (
        "from engine.model import load_spec\n"
        "try:\n"
        "    load_spec('no-such-org/no-such-model')\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = _run_isolated(code, HF_HUB_OFFLINE="1")
    assert out.startswith("UnknownModel model='no-such-org/no-such-model'")
    assert "not a preset (" in out and "smollm2-135m" in out
    assert "hub lookup failed:" in out


def _run_isolated(code: str, **env_overrides: str) -> str:
    env = {**os.environ, **env_overrides}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    return result.stdout


def test_a_hub_id_already_in_the_local_hub_cache_loads_offline(tmp_path):
    # The hub cache layout huggingface_hub reads: models--<org>--<name>/{refs/main, snapshots/<rev>/}
    repo = tmp_path / "hub" / "models--acme--tiny-qwen"
    revision = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    shutil.copy(PRESETS_DIR / "qwen2.5-7b.json", snapshot / "config.json")
    code = (
        "from engine.model import load_spec\n"
        "spec = load_spec('acme/tiny-qwen')\n"
        "print(spec.name, spec.architecture, spec.num_layers, spec.vocab_size)\n"
    )
    out = _run_isolated(code, HF_HOME=str(tmp_path))
    assert out.split() == ["acme/tiny-qwen", "qwen2", "28", "152064"]


def test_an_unknown_hub_id_fails_with_the_reason():
    with pytest.raises(UnknownModel) as err:
        load_spec("no-such-org/no-such-model")
    assert err.value.value == "no-such-org/no-such-model"
    assert "hub lookup failed:" in str(err.value)
