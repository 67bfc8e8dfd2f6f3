"""Quantised pipelines: tokens/s, resident weight bytes measured vs planned, and the answer, per quant.

    .venv/bin/python benchmarks/bench_quant.py [--quants fp32,bf16,int8,int4] [--tokens 32]

CPU (default): the bundled SmolLM2-135M-Instruct through 3 runner processes (layers 0:10, 10:20,
20:30) over TCP on loopback, once per quantisation, asked "What is the capital of France?" through its
chat template. Per quant it prints decode tokens/s (the same greedy loop `engine generate` runs), each
stage's resident weight bytes as the runner measured them (its ready message: the storages behind its
parameters, quantised tensors opened to their int data, scales and zero points) next to what the
planner sizes for that stage (engine.model footprint for the quant and device kind), and the answer.

GPU (scripts/gpu_check.sh): --random-preset llama-3.1-8b --device cuda --stages 0:16,16:32
--quants bf16,int8,int4 writes random bf16 weights of that shape once and runs the same per quant
(no meaningful answer: random weights; prompt = 32 fixed random token ids).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine.generate import (  # noqa: E402
    eos_token_ids,
    greedy_generate,
    load_tokenizer,
    open_pipeline,
    parse_stages,
    prompt_ids,
    start_runners,
    stop_runners,
)
from engine.model import footprint, load_spec  # noqa: E402

PROMPT = "What is the capital of France?"


async def _generate(runners, ids, tokens, eos):
    client = await open_pipeline("tcp", runners)
    try:
        return await greedy_generate(client, ids, tokens, eos)
    finally:
        await client.close()


def run_quant(folder: Path, spec, quant: str, stages, ids, tokens: int, eos, device: str) -> dict:
    started = time.perf_counter()
    runners = start_runners(str(folder), stages, "tcp", dtype=None, quant=quant, restrict_routes=True,
                            extra_args=["--device", device])
    load_s = time.perf_counter() - started
    try:
        result = asyncio.run(_generate(runners, ids, tokens, eos))
        ready = [r.ready for r in runners]
    finally:
        stop_runners(runners)
    device_kind = "cuda" if device.startswith("cuda") else "cpu"
    planned = footprint(spec, quant, device_kind=device_kind)
    rows = []
    for (start, end), record in zip(stages, ready, strict=True):
        measured = record["memory"]["weight_bytes"]
        expected = planned.stage_weight_bytes(end - start, first=start == 0, last=end == spec.num_layers)
        rows.append({"layers": f"{start}:{end}", "measured_bytes": measured, "planned_bytes": expected,
                     "planned_vs_measured_pct": round(100 * (expected - measured) / measured, 2),
                     "kv_bytes_per_token": record["memory"]["kv_cache_bytes_per_token"],
                     "workspace_bytes": record["memory"]["workspace_bytes"]})
    return {"quant": quant, "compute_dtype": ready[0]["dtype"], "load_s": round(load_s, 1),
            "decode_tokens_per_s": round(result["decode_tokens_per_s"], 2),
            "tokens_per_s": round(result["tokens_per_s"], 2), "token_ids": result["token_ids"],
            "weights": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--random-preset", default=None, help="random bf16 weights shaped like this preset")
    parser.add_argument("--stages", default="0:10,10:20,20:30")
    parser.add_argument("--quants", default="fp32,bf16,int8,int4")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="prismn-bench-quant-"))
    try:
        if args.random_preset:
            import torch
            from bench_pipeline import write_random_model

            folder = write_random_model(args.random_preset, workdir / args.random_preset, "bf16", args.device)
            spec = load_spec(args.random_preset)
            ids = [int(i) for i in torch.randint(1000, 20000, (32,), generator=torch.Generator().manual_seed(1))]
            tokenizer, eos = None, set()
        else:
            from engine.model.source import resolve_model

            source = resolve_model(args.model)
            folder, spec = source.folder, load_spec(str(source.folder))
            tokenizer = load_tokenizer(folder)
            ids = prompt_ids(tokenizer, PROMPT, chat=source.instruct)
            eos = eos_token_ids(folder, tokenizer)
        stages = parse_stages(args.stages)
        print(f"# {spec.name}: {len(stages)} stages {args.stages} over TCP on {args.device}, "
              f"{len(ids)} prompt tokens, up to {args.tokens} new", flush=True)
        for quant in args.quants.split(","):
            figures = run_quant(folder, spec, quant, stages, ids, args.tokens, eos, args.device)
            if tokenizer is not None:
                figures["answer"] = tokenizer.decode(figures["token_ids"], skip_special_tokens=True)
            del figures["token_ids"]
            total_measured = sum(r["measured_bytes"] for r in figures["weights"])
            total_planned = sum(r["planned_bytes"] for r in figures["weights"])
            print(f"{quant:5s} (compute {figures['compute_dtype']}): {figures['decode_tokens_per_s']:7.2f} "
                  f"decode tokens/s; weights measured {total_measured:,} B, planned {total_planned:,} B "
                  f"({100 * (total_planned - total_measured) / total_measured:+.2f} %)"
                  + (f"; answer: {figures['answer']!r}" if "answer" in figures else ""), flush=True)
            print(json.dumps(figures), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
