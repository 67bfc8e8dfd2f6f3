"""The bundled SmolLM2-135M-Instruct, split in 3 runner processes over iroh, answers like the whole model."""

from __future__ import annotations

import json

import pytest
import torch

from engine import generate
from engine.model.source import resolve_model

pytestmark = pytest.mark.slow
PROMPT = "What is the capital of France?"
NEW_TOKENS = 16


def test_smollm2_three_stages_over_iroh_match_the_monolithic_model(capsys):
    source = resolve_model("smollm2")           # converts the bundled GGUF once, then reuses the cache
    assert source.instruct and (source.folder / "model.safetensors").is_file()
    assert json.loads(source.config_path.read_text())["num_hidden_layers"] == 30

    status = generate.main(["--model", "smollm2", "--stages", "0:10,10:20,20:30", "--prompt", PROMPT,
                            "--max-new-tokens", str(NEW_TOKENS), "--transport", "iroh", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert status == 0, result
    assert result["chat"] is True
    assert [s["layers"] for s in result["stages"]] == [[0, 10], [10, 20], [20, 30]]
    assert all(s["address"] and s["load_s"] > 0 for s in result["stages"])

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source.folder))
    assert result["prompt_ids"] == generate.prompt_ids(tokenizer, PROMPT, chat=True)
    model = AutoModelForCausalLM.from_pretrained(str(source.folder), dtype=torch.float32,
                                                 attn_implementation="sdpa").eval()
    ids = torch.tensor([result["prompt_ids"]])
    expected = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)[0, ids.shape[1]:].tolist()
    assert result["token_ids"] == expected
    assert "Paris" in result["text"]
