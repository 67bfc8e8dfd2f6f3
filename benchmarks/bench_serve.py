"""Serving throughput through the OpenAI-compatible API: 1, 4 and 8 concurrent clients.

    .venv/bin/python benchmarks/bench_serve.py [--tokens 48] [--clients 1,4,8] [--json]

Starts the headless coordinator exactly as a user does (`python -m engine.coordinator --transport tcp
--bind-host 127.0.0.1 --api-bind 127.0.0.1:PORT --model smollm2 --min-peers 3`) and three local runners
(`python -m engine.runner --ticket ...`), each with room for about a third of SmolLM2, so every token
crosses three stages. Each client streams one chat completion (temperature 0, `--tokens` new tokens)
of its own prompt; a round with N clients sends N requests at once.

Prints per round: aggregate tokens/s (all completion tokens / the round's wall time), p50 / p95
request latency, p50 / p95 time to first token (first streamed text), and whether every greedy
answer equals the same prompt's answer served alone (the 1-client round serves every prompt alone,
one after another). Goal: 8 clients >= 3x the aggregate tokens/s of 1 client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.headless import start_headless  # noqa: E402
from engine.coordinator.local_runners import runner_vram_gb  # noqa: E402

PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a bicycle stays upright while moving.",
    "Describe the water cycle to a ten-year-old.",
    "Write a poem about the first snow of winter.",
    "What are the main causes of the French Revolution?",
    "Give three tips for learning a new language and explain each one.",
    "Describe a walk through a busy market in Marrakesh.",
    "Explain why the sky is blue.",
]
RUNNERS = {"paris": (48.86, 2.35), "frankfurt": (50.11, 8.68), "stockholm": (59.33, 18.07)}


async def one_request(client, prompt: str, tokens: int) -> dict:
    started = time.perf_counter()
    first_s = None
    parts: list[str] = []
    usage = None
    stream = await client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=tokens,
        stream=True, stream_options={"include_usage": True})
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        if chunk.choices and chunk.choices[0].delta.content:
            if first_s is None:
                first_s = time.perf_counter() - started
            parts.append(chunk.choices[0].delta.content)
    return {"text": "".join(parts), "latency_s": time.perf_counter() - started, "ttft_s": first_s,
            "completion_tokens": usage.completion_tokens if usage else None}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def cpu_s(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) each process has used so far, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[name] = (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):
            out[name] = float("nan")
    return out


async def run_rounds(url: str, clients: list[int], tokens: int, pids: dict[str, int]) -> dict:
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="loopback", max_retries=0, timeout=600)
    await one_request(client, "Hello", 4)                       # warm-up
    rounds = {}
    alone: dict[str, str] = {}
    for n in clients:
        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(max(n, len(PROMPTS) if n == 1 else n))]
        started = time.perf_counter()
        cpu_before = cpu_s(pids)
        if n == 1:
            results = [await one_request(client, p, tokens) for p in prompts]
        else:
            results = await asyncio.gather(*(one_request(client, p, tokens) for p in prompts))
        wall_s = time.perf_counter() - started
        cpu_after = cpu_s(pids)
        if n == 1:
            alone = {p: r["text"] for p, r in zip(prompts, results, strict=True)}
        same = all(alone.get(p) == r["text"] for p, r in zip(prompts, results, strict=True)) if alone else None
        total_tokens = sum(r["completion_tokens"] or 0 for r in results)
        rounds[n] = {
            "requests": len(results), "completion_tokens": total_tokens, "wall_s": round(wall_s, 2),
            "aggregate_tokens_per_s": round(total_tokens / wall_s, 2),
            "latency_p50_s": round(percentile([r["latency_s"] for r in results], 0.5), 2),
            "latency_p95_s": round(percentile([r["latency_s"] for r in results], 0.95), 2),
            "ttft_p50_s": round(percentile([r["ttft_s"] or 0.0 for r in results], 0.5), 3),
            "ttft_p95_s": round(percentile([r["ttft_s"] or 0.0 for r in results], 0.95), 3),
            "identical_to_alone": same,
            # where the work went: CPU ms per generated token, per process
            "cpu_ms_per_token": {name: round(1000 * (cpu_after[name] - cpu_before[name]) / max(total_tokens, 1), 1)
                                 for name in pids},
        }
    await client.close()
    return rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--clients", default="1,4,8")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--log-dir", default="/tmp/prismn-bench-serve")
    parser.add_argument("--runner-threads", type=int, default=1,
                        help="torch threads per runner (OMP_NUM_THREADS; 0 = torch's default). Three runners "
                             "share two cores here: with two threads each, threads wait on each other and a "
                             "batched matmul costs ~7x a single one instead of ~2x")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    log_dir = Path(args.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    from engine.model.source import resolve_model

    resolve_model("smollm2")
    swarm = start_headless(log_dir, f"sqlite:{log_dir}/prismn.sqlite3", "smollm2", RUNNERS,
                           runner_vram_gb("smollm2", stages=3), coordinator_extra=("--log-level", "WARNING"),
                           runner_extra=("--log-level", "WARNING"),
                           runner_env={"OMP_NUM_THREADS": str(args.runner_threads)} if args.runner_threads else None)
    try:
        swarm.coordinator.wait_line("deployed ", 300)
        url = swarm.url
        pids = {"coordinator": swarm.coordinator.pid, **{name: p.pid for name, p in swarm.runners.items()}}
        rounds = asyncio.run(run_rounds(url, clients, args.tokens, pids))
    finally:
        swarm.close()
    base = rounds.get(1, {}).get("aggregate_tokens_per_s")
    if args.json:
        print(json.dumps({"tokens": args.tokens, "rounds": rounds}))
        return 0
    threads = args.runner_threads or "default"
    print(f"SmolLM2-135M fp32 CPU, 3 runners (TCP, loopback, {threads} torch thread(s) each), "
          f"{args.tokens} new tokens per request, greedy")
    print(f"{'clients':>7} {'req':>4} {'tok/s':>8} {'x1':>6} {'p50 s':>7} {'p95 s':>7} {'ttft50':>7} "
          f"{'ttft95':>7}  same-as-alone")
    for n, r in rounds.items():
        ratio = r["aggregate_tokens_per_s"] / base if base else float("nan")
        print(f"{n:>7} {r['requests']:>4} {r['aggregate_tokens_per_s']:>8.2f} {ratio:>6.2f} {r['latency_p50_s']:>7.2f} "
              f"{r['latency_p95_s']:>7.2f} {r['ttft_p50_s']:>7.3f} {r['ttft_p95_s']:>7.3f}  {r['identical_to_alone']}")
    print("CPU ms per generated token (coordinator incl. API, then each runner):")
    for n, r in rounds.items():
        print(f"{n:>7} clients: " + ", ".join(f"{k} {v}" for k, v in r["cpu_ms_per_token"].items()))
    print("load average (1, 5, 15 min):", " ".join(f"{v:.2f}" for v in os.getloadavg()))
    if base and 8 in rounds:
        print(f"goal 8 clients >= 3x 1 client: {rounds[8]['aggregate_tokens_per_s'] / base:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
