"""A tiny real Llama (the runner tests' fixed-seed builder) with a byte-level tokenizer, and runners."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.paths import REPO_ROOT
from tests.engine.runner.conftest import load_monolithic, save_tiny


def save_byte_tokenizer(folder: Path) -> None:
    """A byte-level BPE with no merges: ids 0..255 are the bytes, exactly the tiny model's vocab."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {char: byte for byte, char in bytes_to_unicode().items()}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer).save_pretrained(str(folder))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    folder = save_tiny(tmp_path_factory.mktemp("tiny-llama-coordinator"))
    # No end-of-sequence token: every generation runs its full length, long enough to interrupt.
    for name in ("config.json", "generation_config.json"):
        path = folder / name
        if path.exists():
            data = json.loads(path.read_text())
            data["eos_token_id"] = None
            path.write_text(json.dumps(data))
    save_byte_tokenizer(folder)
    return folder


def greedy_monolithic(folder: Path, prompt_ids: list[int], max_new_tokens: int, quant: str = "fp32") -> list[int]:
    """The reference: the whole model in one piece, greedy, recomputing the full sequence each step
    in fp32; at other quants with a KV cache, as the pipeline decodes (bf16 full recomputes and cached
    steps round differently)."""
    model = load_monolithic(folder, quant)
    if quant != "fp32":
        with torch.no_grad():
            out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=None, min_new_tokens=max_new_tokens)
        return out[0, len(prompt_ids):].tolist()
    ids = list(prompt_ids)
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt_ids):]


def spawn_runner(ticket: str, peer_id: str, lat: float, lon: float, vram_gb: float, log_dir: Path,
                 extra: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    # The ticket in the environment (as the app's local runners get it), the runner key in the test's dir.
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PRISMN_TICKET": ticket, "PRISMN_HOME": str(log_dir)}
    log_file = open(log_dir / f"{peer_id}.log", "ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "engine.runner.agent", "--id", peer_id,
             "--name", peer_id, "--lat", str(lat), "--lon", str(lon), "--vram-gb", f"{vram_gb:.9f}", *extra],
            cwd=str(REPO_ROOT), env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        log_file.close()


@pytest.fixture
def grids(monkeypatch):
    """A fake Electricity Maps server on 127.0.0.1 (Paris clean, Madrid middling, Warsaw dirty), set in
    the environment as a user would, so runner and coordinator processes started by the test use it."""
    from tests.engine.carbon.fake_grids import start_fake_grids
    from tests.engine.coordinator.test_end_to_end import CITIES

    server = start_fake_grids()
    for zone, (city, g) in {"FR": ("paris", 50), "ES": ("madrid", 300), "PL": ("warsaw", 700)}.items():
        server.set_zone(zone, *CITIES[city], g)
    for key, value in {"ELECTRICITYMAPS_TOKEN": server.token, "ELECTRICITYMAPS_API_URL": server.url + "/em",
                       "PRISMN_NATIONALGRID": "0", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("WATTTIME_USERNAME", raising=False)
    yield server
    server.stop()
