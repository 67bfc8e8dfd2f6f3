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
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

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


class Process:
    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.log = open(log_path, "w")
        self.popen = subprocess.Popen([sys.executable, *args], cwd=str(ROOT), env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.popen.stdout:
            self.log.write(line)
            self.log.flush()
            self.lines.put(line.rstrip("\n"))

    def wait_line(self, prefix: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.popen.poll() is not None:
                    break
                continue
            if line.startswith(prefix):
                return line
        raise SystemExit(f"no line starting {prefix!r} within {timeout_s} s (log: {self.log.name})")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self.log.close()


def third_of_smollm2_gb() -> float:
    from engine import GB
    from engine.model import footprint, load_spec

    fp = footprint(load_spec("smollm2"))
    third = fp.stage_bytes(math.ceil(fp.num_layers / 3), first=True, last=True)
    half = fp.stage_bytes(math.ceil(fp.num_layers / 2), first=True, last=True)
    return (third + half) / 2 / (1.0 - fp.safety_margin) / GB


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    port = free_port()
    coordinator = Process(["-m", "engine.coordinator", "--transport", "tcp", "--bind-host", "127.0.0.1",
                           "--store", f"sqlite:{log_dir}/prismn.sqlite3", "--api-bind", f"127.0.0.1:{port}",
                           "--model", "smollm2", "--min-peers", "3", "--log-level", "WARNING"],
                          log_dir / "coordinator.log")
    runners = []
    try:
        ticket = coordinator.wait_line("ticket: ", 60).split(": ", 1)[1]
        url = coordinator.wait_line("api: ", 30).split(": ", 1)[1]
        vram_gb = third_of_smollm2_gb()
        for name, (lat, lon) in RUNNERS.items():
            runners.append(Process(["-m", "engine.runner", "--ticket", ticket, "--lat", str(lat), "--lon", str(lon),
                                    "--vram-gb", f"{vram_gb:.6f}", "--id", name, "--log-level", "WARNING"],
                                   log_dir / f"{name}.log",
                                   {"OMP_NUM_THREADS": str(args.runner_threads)} if args.runner_threads else None))
        coordinator.wait_line("deployed ", 300)
        pids = {"coordinator": coordinator.popen.pid,
                **{name: process.popen.pid for name, process in zip(RUNNERS, runners, strict=True)}}
        rounds = asyncio.run(run_rounds(url, clients, args.tokens, pids))
    finally:
        for process in [*runners, coordinator]:
            process.stop()
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
