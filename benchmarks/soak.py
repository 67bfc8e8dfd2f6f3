"""Soak under faults: requests through the OpenAI-style API while runners are SIGKILLed and rejoin.

    .venv/bin/python benchmarks/soak.py [--requests 100 --clients 4 --kills 3 --seed 13] [--json]

Steps, in order:
1. references: each (prompt, sampling) the load uses, answered by the monolithic model through
   engine.decoding's loop and token picker (greedy; sampled with the request's seed), in fp32;
2. swarm: the headless coordinator (SQLite store, API on loopback, `--quant fp32`) and 4 runners at
   European cities, each emulating the WAN from its city (`--emulate-wan`) and with room for half the
   model, so any two can hold it (benchmarks/headless.py starts them as a user does);
3. load: C clients (the official `openai` client, retrying a 503 after its Retry-After) share N completions; every
   other client streams; half the requests are greedy, half sampled with a fixed seed;
4. faults, meanwhile: K times, after a seeded random pause, one runner of the current deployment is
   SIGKILLed; detection is the time until the coordinator logs it lost, recovery the time until it
   prints the next ready deployment; after another seeded pause the runner is started again (same id)
   and rejoins as a spare;
5. report: requests completed, identical to the reference, lost (an error, or no answer), duplicated
   streamed tokens (streamed text longer than the reference), per-kill detection and recovery, load.

Goal: 0 requests lost, 0 duplicated tokens, detection <= 3 s per kill. Detection and recovery are
timed by the coordinator's output lines as they reach this process (a pipe: well under 10 ms late).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.headless import HeadlessSwarm, start_headless  # noqa: E402

PROMPTS = [
    "The lighthouse keeper opened the bottle and read",
    "A bicycle stays upright while moving because",
    "The water cycle begins when",
    "The first snow of winter fell on",
    "The main causes of the French Revolution were",
    "To learn a new language quickly, you should",
    "The market in Marrakesh was busy with",
    "The sky is blue because",
]
RUNNERS = {"paris": (48.86, 2.35), "frankfurt": (50.11, 8.68), "stockholm": (59.33, 18.07),
           "madrid": (40.42, -3.70)}
SAMPLED = {"temperature": 0.8, "top_p": 0.95}
DETECTION_GOAL_S = 3.0
REQUEST_TIMEOUT_S = 300.0
# The official client's retries, after the Retry-After of a 503 (a deployment not ready within the
# API's wait while it re-plans): a request is lost when it has no answer after them.
CLIENT_RETRIES = 5
EVENT_TIMEOUT_S = 180.0            # a kill's loss, redeploy or rejoin not seen by then is reported missing


@dataclass(frozen=True)
class Request:
    index: int
    prompt: str
    seed: int | None               # None: greedy
    stream: bool

    def sampling(self) -> dict[str, Any]:
        return {"temperature": 0.0} if self.seed is None else {**SAMPLED, "seed": self.seed}


@dataclass
class Outcome:
    index: int
    stream: bool
    greedy: bool
    ok: bool = False
    identical: bool = False
    duplicated_tokens: int = 0
    recoveries: int = 0
    started_s: float = 0.0          # time.monotonic()
    latency_s: float = 0.0
    error: str = ""


@dataclass
class Kill:
    victim: str
    at_s: float                     # seconds since the first request was sent
    killed_s: float                 # time.monotonic()
    in_flight: int = 0              # requests under way at that moment
    detection_s: float | None = None
    recovery_s: float | None = None
    rejoined_s: float | None = None  # after the restart
    redeployed_on: list[str] = field(default_factory=list)


def make_requests(count: int, clients: int) -> list[Request]:
    """Request i: prompt i mod 8, greedy or sampled (seed 1 + i mod 8) in alternating pairs (each prompt
    both ways over 16 requests); requests of odd clients stream."""
    requests = []
    for i in range(count):
        greedy = (i // 2 + i // len(PROMPTS)) % 2 == 0
        requests.append(Request(i, PROMPTS[i % len(PROMPTS)], None if greedy else 1 + i % len(PROMPTS),
                                stream=(i % clients) % 2 == 1))
    return requests


# ---- 1. references ------------------------------------------------------------------------------

def references(model: str, requests: list[Request], max_tokens: int) -> dict[tuple[str, int | None], str]:
    """(prompt, seed) -> the monolithic model's text, decoded as the ingress decodes it."""
    import torch
    from transformers import AutoModelForCausalLM

    from engine.decoding import load_text
    from engine.model.source import resolve_model

    folder = resolve_model(model).folder
    tokenizer, eos_ids = load_text(folder)
    torch.set_num_threads(1)             # two cores shared with the swarm's processes: spinning threads stall
    monolithic = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    out: dict[tuple[str, int | None], str] = {}
    for request in requests:
        key = (request.prompt, request.seed)
        if key not in out:
            out[key] = asyncio.run(_monolithic_text(monolithic, tokenizer, eos_ids, request, max_tokens))
    return out


async def _monolithic_text(monolithic: Any, tokenizer: Any, eos_ids: frozenset[int], request: Request,
                           max_tokens: int) -> str:
    """engine.decoding's loop with the whole model as its one step (a KV cache, as the stages keep; fp32)."""
    import torch
    from transformers import DynamicCache

    from engine.decoding import Sampling, TextStream, decode, pick_token, prompt_ids

    sampling = Sampling.create(**request.sampling())
    cache = DynamicCache()

    async def step(ids: list[int], position: int, _wire: Any) -> int:
        with torch.inference_mode():
            logits = monolithic(torch.tensor([ids]), cache=cache, use_cache=True).logits[0, -1]
        return pick_token(logits, sampling, position + len(ids))

    stream = TextStream(tokenizer)
    await decode(step, prompt_ids(tokenizer, request.prompt, chat=False), sampling, max_tokens, eos_ids, stream)
    return stream.sent


# ---- 3. load ------------------------------------------------------------------------------------

async def run_load(url: str, model_id: str, requests: list[Request], clients: int, max_tokens: int,
                   expected: dict[tuple[str, int | None], str], count_tokens, answered_503: list[str | None],
                   under_way: threading.Event) -> list[Outcome]:
    """Each client sends its share of `requests` one after another; `answered_503` collects the
    Retry-After of every 503 the clients got (and retried after, as the official client does);
    `under_way` is set as the first request is sent."""
    import httpx
    import openai

    async def one(client: Any, request: Request) -> Outcome:
        outcome = Outcome(request.index, request.stream, request.seed is None, started_s=time.monotonic())
        started = outcome.started_s
        under_way.set()
        want = expected[(request.prompt, request.seed)]
        try:
            if request.stream:
                parts, prismn = [], {}
                stream = await client.completions.create(model=model_id, prompt=request.prompt,
                                                         max_tokens=max_tokens, stream=True, **request.sampling())
                async for chunk in stream:
                    if chunk.choices:
                        parts.append(chunk.choices[0].text or "")
                        prismn = (chunk.model_extra or {}).get("prismn") or prismn
                    elif (chunk.model_extra or {}).get("error"):
                        raise RuntimeError(chunk.model_extra["error"].get("message"))
                text = "".join(parts)
                if not prismn:
                    raise RuntimeError("the stream ended without its last chunk")
                if text != want:        # text streamed twice (after a failover) makes it longer
                    outcome.duplicated_tokens = max(0, count_tokens(text) - count_tokens(want))
            else:
                reply = await client.completions.create(model=model_id, prompt=request.prompt,
                                                        max_tokens=max_tokens, **request.sampling())
                text, prismn = reply.choices[0].text, reply.model_extra["prismn"]
            outcome.ok, outcome.identical = True, text == want
            outcome.recoveries = int(prismn.get("recoveries", 0))
        except Exception as exc:            # a lost request: the client gave up with this error
            outcome.error = f"{type(exc).__name__}: {exc}"[:300]
        outcome.latency_s = time.monotonic() - started
        return outcome

    async def count_503(response: httpx.Response) -> None:
        if response.status_code == 503:
            answered_503.append(response.headers.get("retry-after"))

    async def client_loop(number: int) -> list[Outcome]:
        http = httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, event_hooks={"response": [count_503]})
        async with openai.AsyncOpenAI(base_url=url, api_key="loopback", max_retries=CLIENT_RETRIES,
                                      timeout=REQUEST_TIMEOUT_S, http_client=http) as client:
            return [await one(client, r) for r in requests[number::clients]]

    per_client = await asyncio.gather(*(client_loop(n) for n in range(clients)))
    return sorted((o for outcomes in per_client for o in outcomes), key=lambda o: o.index)


# ---- 4. faults ----------------------------------------------------------------------------------

DEPLOYED = re.compile(r"^deployed (\S+) on \d+ runner\(s\): (.*)$")


def deployed_peers(swarm: HeadlessSwarm) -> list[str]:
    """The runners of the deployment the coordinator last announced."""
    for _, line in reversed(swarm.coordinator.lines_since(0.0)):
        match = DEPLOYED.match(line)
        if match:
            return [part.split()[0] for part in match.group(2).split(", ")]
    return []


def wait_for_line(swarm: HeadlessSwarm, pattern: re.Pattern[str], since_s: float, timeout_s: float,
                  stop: threading.Event) -> tuple[float, re.Match[str]] | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not stop.is_set():
        for at_s, line in swarm.coordinator.lines_since(since_s):
            match = pattern.search(line)
            if match:
                return at_s, match
        time.sleep(0.02)
    return None


def inject_faults(swarm: HeadlessSwarm, kills: int, rng: random.Random, under_way: threading.Event,
                  done: threading.Event, pause_s: tuple[float, float], rejoin_s: tuple[float, float],
                  out: list[Kill]) -> None:
    """K kills in turn, the first pause counted from the first request; each victim is started again
    after a pause and rejoins (a thread)."""
    under_way.wait(EVENT_TIMEOUT_S)
    started_s = time.monotonic()
    for _ in range(kills):
        if done.wait(rng.uniform(*pause_s)):
            return
        candidates = sorted(p for p in deployed_peers(swarm) if swarm.runners[p].popen.poll() is None)
        if not candidates:
            continue
        victim = rng.choice(candidates)
        killed_s = swarm.runners[victim].kill()
        kill = Kill(victim, round(killed_s - started_s, 2), killed_s)
        out.append(kill)
        lost = wait_for_line(swarm, re.compile(rf"\blost {re.escape(victim)}: "), killed_s, EVENT_TIMEOUT_S, done)
        if lost is not None:
            kill.detection_s = round(lost[0] - killed_s, 3)
        redeployed = wait_for_line(swarm, DEPLOYED, killed_s, EVENT_TIMEOUT_S, done)
        if redeployed is not None:
            kill.recovery_s = round(redeployed[0] - killed_s, 3)
            kill.redeployed_on = [part.split()[0] for part in redeployed[1].group(2).split(", ")]
        time.sleep(rng.uniform(*rejoin_s))            # the runner stays down a while, even after the load
        restarted_s = time.monotonic()
        swarm.runners[victim].restart()
        joined = wait_for_line(swarm, re.compile(rf"\bjoined: {re.escape(victim)} "), restarted_s,
                               EVENT_TIMEOUT_S, threading.Event())
        if joined is not None:
            kill.rejoined_s = round(joined[0] - restarted_s, 3)


# ---- the whole soak -----------------------------------------------------------------------------

def run_soak(model: str, requests: int, clients: int, kills: int, seed: int, max_tokens: int, log_dir: Path,
             pause_s: tuple[float, float] = (3.0, 10.0), rejoin_s: tuple[float, float] = (1.0, 4.0),
             deploy_timeout_s: float = 300.0) -> dict[str, Any]:
    from engine.coordinator.local_runners import runner_vram_gb
    from engine.decoding import load_text
    from engine.model.source import resolve_model

    plan = make_requests(requests, clients)
    expected = references(model, plan, max_tokens)
    tokenizer, _ = load_text(resolve_model(model).folder)

    def count_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    swarm = start_headless(log_dir, f"sqlite:{log_dir}/prismn.sqlite3", model, RUNNERS,
                           runner_vram_gb(model, "fp32"), coordinator_extra=("--quant", "fp32"),
                           runner_extra=("--emulate-wan", "--log-level", "WARNING"),
                           runner_env={"OMP_NUM_THREADS": "1"})
    try:
        swarm.coordinator.wait_line("deployed ", deploy_timeout_s)
        import httpx

        model_id = httpx.get(swarm.url + "/models", timeout=30).json()["data"][0]["id"]
        rng = random.Random(seed)
        done = threading.Event()
        killed: list[Kill] = []
        under_way = threading.Event()
        faults = threading.Thread(target=inject_faults, daemon=True,
                                  args=(swarm, kills, rng, under_way, done, pause_s, rejoin_s, killed))
        faults.start()
        load_peak = [0.0]
        sampler_stop = threading.Event()

        def sample_load() -> None:
            while not sampler_stop.wait(1.0):
                load_peak[0] = max(load_peak[0], os.getloadavg()[0])

        threading.Thread(target=sample_load, daemon=True).start()
        answered_503: list[str | None] = []
        started_s = time.monotonic()
        outcomes = asyncio.run(run_load(swarm.url, model_id, plan, clients, max_tokens, expected, count_tokens,
                                        answered_503, under_way))
        load_s = time.monotonic() - started_s
        done.set()
        faults.join(EVENT_TIMEOUT_S + 10)
        sampler_stop.set()
    finally:
        swarm.close()
    completed = [o for o in outcomes if o.ok]
    for kill in killed:
        kill.in_flight = sum(o.started_s <= kill.killed_s <= o.started_s + o.latency_s for o in outcomes)
    return {
        "model": model, "requests": len(outcomes), "clients": clients, "max_tokens": max_tokens, "seed": seed,
        "completed": len(completed),
        "identical": sum(o.identical for o in completed),
        "identical_greedy": sum(o.identical for o in completed if o.greedy),
        "identical_sampled": sum(o.identical for o in completed if not o.greedy),
        "lost": len(outcomes) - len(completed),
        "streamed": sum(o.stream for o in completed),
        "duplicated_tokens": sum(o.duplicated_tokens for o in outcomes),
        "requests_recovered": sum(o.recoveries > 0 for o in completed),
        "recoveries": sum(o.recoveries for o in completed),
        "most_recoveries_of_one_request": max((o.recoveries for o in completed), default=0),
        "answered_503": len(answered_503),
        "answered_503_without_retry_after": sum(r is None for r in answered_503),
        "kills": [asdict(k) for k in killed],
        "kills_planned": kills,
        "load_s": round(load_s, 1),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "load_average_peak_1min": round(load_peak[0], 2),
        "errors": [f"#{o.index}: {o.error}" for o in outcomes if not o.ok][:10],
        "differing": [o.index for o in completed if not o.identical][:20],
    }


def print_report(r: dict[str, Any]) -> None:
    print(f"{r['model']}, fp32 CPU; 4 runners (TCP, loopback, emulated WAN, 1 torch thread each), "
          f"{r['clients']} clients, {r['max_tokens']} new tokens per request, seed {r['seed']}")
    print(f"requests: {r['requests']}  completed: {r['completed']}  lost: {r['lost']} (goal 0)  "
          f"in {r['load_s']} s")
    print(f"identical to the monolithic model: {r['identical']} of {r['completed']} "
          f"(greedy {r['identical_greedy']}, sampled with a seed {r['identical_sampled']})")
    print(f"streamed: {r['streamed']}; duplicated tokens streamed: {r['duplicated_tokens']} (goal 0)")
    print(f"requests that lived through a failover: {r['requests_recovered']} ({r['recoveries']} retries from the "
          f"prompt in all, at most {r['most_recoveries_of_one_request']} for one request; the ingress allows 3)")
    print(f"503 answers retried by the client after Retry-After: {r['answered_503']} "
          f"({r['answered_503_without_retry_after']} without the header)")
    print(f"kills: {len(r['kills'])} of {r['kills_planned']}")
    for k in r["kills"]:
        detection = "not seen" if k["detection_s"] is None else f"{k['detection_s']:.3f} s"
        recovery = "not seen" if k["recovery_s"] is None else f"{k['recovery_s']:.2f} s"
        rejoined = "not seen" if k["rejoined_s"] is None else f"{k['rejoined_s']:.1f} s after restart"
        print(f"  {k['victim']:>9} at +{k['at_s']:.1f} s ({k['in_flight']} requests in flight): detected in {detection} (goal <= {DETECTION_GOAL_S:g} s), "
              f"redeployed in {recovery} on {', '.join(k['redeployed_on']) or '-'}; rejoined {rejoined}")
    print("load average (1, 5, 15 min):", " ".join(f"{v:.2f}" for v in r["load_average"]),
          f"(1-min peak during the load {r['load_average_peak_1min']:.2f})")
    for line in r["errors"]:
        print("  lost", line)
    if r["differing"]:
        print("  differing from the reference:", r["differing"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=16, help="max new tokens per request")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--log-dir", default=None, help="children's logs and the store (default: a fresh temp dir)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    for name in ("requests", "clients", "tokens"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1 (got {getattr(args, name)})")
    if args.kills < 0 or args.kills >= len(RUNNERS):
        parser.error(f"--kills must be in 0..{len(RUNNERS) - 1} (got {args.kills})")
    log_dir = Path(args.log_dir) if args.log_dir else Path(tempfile.mkdtemp(prefix="prismn-soak-"))
    report = run_soak(args.model, args.requests, args.clients, args.kills, args.seed, args.tokens, log_dir)
    report["log_dir"] = str(log_dir)
    if args.json:
        print(json.dumps(report))
    else:
        print_report(report)
        print(f"logs: {log_dir}")
    return 0 if report["lost"] == 0 and report["duplicated_tokens"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
