"""Pipeline vs monolithic decode speed for SmolLM2-135M on this machine.

    .venv/bin/python benchmarks/bench_pipeline.py [--tokens 64] [--stages 0:10,10:20,20:30] [--repeats 3]

Baselines, in this process: `model.generate(do_sample=False)` (decode tokens/s = (N - 1) / (t(N) - t(1)))
and the pipeline's own greedy loop over the whole model as one stage (no processes, no network).
Contenders run in interleaved rounds and each figure is the best of --repeats rounds, since the
machine may be shared and contention only ever slows a run.
Pipeline: one runner process per stage, hidden states runner -> runner over iroh (and TCP), the last
stage returning the token to this process; decode tokens/s from the same greedy loop `engine
generate` runs. Prints both, the ratio (goal >= 0.8) and the per-token overhead in ms.

On a GPU (scripts/gpu_check.sh): --random-preset llama-3.1-8b --dtype bf16 --device cuda --stages 0:16,16:32
writes random weights of that shape instead of using --model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

# Same OpenMP policy as the runners (engine/runner/__main__.py), so the baseline is not penalised by
# spinning threads on a shared machine; set before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.generate import (  # noqa: E402
    greedy_generate,
    load_tokenizer,
    open_pipeline,
    parse_stages,
    prompt_ids,
    start_runners,
    stop_runners,
)
from engine.model.source import resolve_model  # noqa: E402

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def write_random_model(preset: str, folder: Path, dtype: str, device: str, shard_gb: float = 4.0) -> Path:
    """A checkpoint of the preset's shape (assets/models/<preset>.json) with random weights.

    Tensor names and shapes come from the transformers class built on the meta device; weights are
    N(0, 0.02) (norms 1), drawn on `device`, written as safetensors shards with an index.
    """
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    from engine.paths import ASSETS_DIR

    config_path = Path(preset) if Path(preset).is_file() else ASSETS_DIR / "models" / f"{preset}.json"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(config_path.read_text())
    config = AutoConfig.from_pretrained(str(folder))
    with torch.device("meta"):
        shapes = {name: tuple(t.shape) for name, t in AutoModelForCausalLM.from_config(config).state_dict().items()}
    if getattr(config, "tie_word_embeddings", False):
        shapes.pop("lm_head.weight", None)
    generator = torch.Generator(device=device).manual_seed(0)
    weight_map: dict[str, str] = {}
    shard: dict[str, torch.Tensor] = {}
    shard_bytes, index = 0, 0

    def flush() -> None:
        nonlocal shard, shard_bytes, index
        if shard:
            name = f"model-{index:05d}.safetensors"
            save_file(shard, str(folder / name), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(shard, name))
            shard, shard_bytes, index = {}, 0, index + 1

    for name, shape in shapes.items():
        if name.endswith("norm.weight"):
            tensor = torch.ones(shape, dtype=DTYPES[dtype], device=device)
        else:
            tensor = (torch.randn(shape, generator=generator, device=device, dtype=torch.float32) * 0.02)
            tensor = tensor.to(DTYPES[dtype])
        shard[name] = tensor.cpu()
        shard_bytes += tensor.numel() * tensor.element_size()
        if shard_bytes >= shard_gb * 2**30:
            flush()
    flush()
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


class HfBaseline:
    """`model.generate(do_sample=False)` of the whole model; decode rate = (N - 1) / (t(N) - t(1))."""

    def __init__(self, folder: Path, dtype: str, device: str) -> None:
        from transformers import AutoModelForCausalLM

        self.device = device
        self.model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=DTYPES[dtype],
                                                          attn_implementation="sdpa").to(device).eval()

    def _timed(self, ids: list[int], new_tokens: int) -> float:
        inputs = torch.tensor([ids], device=self.device)
        _sync(self.device)
        started = time.perf_counter()
        self.model.generate(inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        _sync(self.device)
        return time.perf_counter() - started

    def decode_tps(self, ids: list[int], tokens: int) -> float:
        return (tokens - 1) / (self._timed(ids, tokens) - self._timed(ids, 1))


class LoopBaseline:
    """The stricter baseline: the whole model as ONE stage, the pipeline's own greedy loop, no network."""

    def __init__(self, folder: Path, dtype: str, device: str) -> None:
        from engine.runner.shards import load_config, load_stage
        from engine.runner.stage import StageExecutor

        stage = load_stage(folder, 0, load_config(folder).num_hidden_layers, dtype=dtype, device=device)
        self.executor = StageExecutor(stage)
        self.runs = 0

    def decode(self, ids: list[int], tokens: int) -> tuple[float, list[int]]:
        self.runs += 1
        session, inputs, position, started, generated = f"run-{self.runs}", torch.tensor([ids]), 0, None, []
        for _ in range(tokens):
            logits = self.executor.forward(session, position, inputs, last_only=True)
            position += inputs.shape[1]
            inputs = logits[:, -1:].argmax(-1).cpu()      # the token crosses to the host, as in the pipeline
            generated.append(int(inputs))
            started = started or time.perf_counter()      # decode starts after the prefill step
        self.executor.end_session(session)
        return (tokens - 1) / (time.perf_counter() - started), generated


async def interleaved_rounds(baselines: dict, transport: str, runners: list, ids: list[int],
                             tokens: int, repeats: int, best: dict[str, float]) -> dict[str, list[int]]:
    """Round after round, each contender decodes once, so drifting load on a shared machine hits all alike."""
    client = await open_pipeline(transport, runners)
    outputs: dict[str, list[int]] = {}
    try:
        await greedy_generate(client, ids, 4, set(), session_id="warm-up")
        for run in range(repeats):
            if "hf" in baselines:
                best["hf"] = max(best.get("hf", 0.0), baselines["hf"].decode_tps(ids, tokens))
            rate, outputs["loop"] = baselines["loop"].decode(ids, tokens)
            best["loop"] = max(best.get("loop", 0.0), rate)
            result = await greedy_generate(client, ids, tokens, set(), session_id=f"bench-{run}")
            best[transport] = max(best.get(transport, 0.0), result["decode_tokens_per_s"])
            outputs[transport] = result["token_ids"]
        return outputs
    finally:
        await client.close()


def main() -> None:
    import shutil
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--random-preset", default=None,
                        help="instead of --model: random weights shaped like assets/models/<preset>.json")
    parser.add_argument("--stages", default="0:10,10:20,20:30")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--transports", default="iroh,tcp")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-hf", action="store_true", help="skip the HF generate baseline")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="prismn-bench-"))
    try:
        run_benchmark(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_benchmark(args: argparse.Namespace, workdir: Path) -> None:
    import importlib.util

    if args.random_preset:
        started = time.perf_counter()
        folder = write_random_model(args.random_preset, workdir / args.random_preset, args.dtype, args.device)
        name = f"{args.random_preset} (random {args.dtype})"
        ids = [int(i) for i in torch.randint(1000, 20000, (32,), generator=torch.Generator().manual_seed(1))]
        print(f"wrote random {args.random_preset} in {time.perf_counter() - started:.1f} s", flush=True)
    else:
        source = resolve_model(args.model)
        folder, name = source.folder, source.name
        ids = prompt_ids(load_tokenizer(source.folder), PROMPT, chat=source.instruct)
    stages = parse_stages(args.stages)
    figures: dict = {"model": name, "device": args.device, "dtype": args.dtype, "prompt_tokens": len(ids),
                     "new_tokens": args.tokens, "stages": args.stages, "torch_threads": torch.get_num_threads(),
                     "omp_wait_policy": os.environ["OMP_WAIT_POLICY"]}
    if args.device.startswith("cuda"):
        figures["gpu"] = torch.cuda.get_device_name()
    baselines: dict = {}
    if not args.skip_hf:
        baselines["hf"] = HfBaseline(folder, args.dtype, args.device)
    baselines["loop"] = LoopBaseline(folder, args.dtype, args.device)
    for warm_up in baselines.values():
        warm_up.decode_tps(ids, 4) if isinstance(warm_up, HfBaseline) else warm_up.decode(ids, 4)
    best: dict[str, float] = {}
    ready: dict[str, list[dict]] = {}
    generated: dict[str, dict[str, list[int]]] = {}
    for transport in args.transports.split(","):
        if transport == "iroh" and importlib.util.find_spec("iroh") is None:
            print("iroh is not installed here: skipping the iroh pipeline")
            continue
        runners = start_runners(str(folder), stages, transport, args.dtype)
        try:
            outputs = asyncio.run(interleaved_rounds(baselines, transport, runners, ids,
                                                     args.tokens, args.repeats, best))
        finally:
            stop_runners(runners)
        ready[transport] = [r.ready for r in runners]
        generated[transport] = outputs
    # Ratios against the best baseline over ALL rounds (every transport's rounds ran the baselines too).
    for transport in ready:
        tps, loop, mono = best[transport], best["loop"], best.get("hf")
        outputs = generated[transport]
        same = sum(a == b for a, b in zip(outputs[transport], outputs["loop"], strict=False))
        record = {"decode_tokens_per_s": round(tps, 2), "ratio_vs_in_process": round(tps / loop, 3),
                  "overhead_vs_in_process_ms_per_token": round(1000 / tps - 1000 / loop, 2),
                  "tokens_equal_to_in_process": f"{same}/{len(outputs['loop'])}",
                  "stage_load_s": [round(r["load_s"], 2) for r in ready[transport]],
                  "stage_devices": [r.get("device") for r in ready[transport]],
                  "stage_gpus": [(r.get("metrics") or {}).get("gpu") for r in ready[transport]]}
        line = (f"pipeline {len(stages)} stages over {transport}: {tps:.1f} tokens/s ({1000 / tps:.1f} ms/token), "
                f"ratio {tps / loop:.2f} vs in-process loop")
        if mono:
            record["ratio"] = round(tps / mono, 3)
            record["overhead_ms_per_token"] = round(1000 / tps - 1000 / mono, 2)
            line += f" / {tps / mono:.2f} vs HF generate"
        print(f"{line} (goal >= 0.8); same tokens as the in-process loop: {same}/{len(outputs['loop'])}; "
              f"stage load {', '.join(f'{s:.1f}' for s in record['stage_load_s'])} s", flush=True)
        figures[transport] = record
    if "hf" in best:
        figures["monolithic_decode_tokens_per_s"] = round(best["hf"], 2)
        print(f"monolithic HF generate: {best['hf']:.1f} tokens/s ({1000 / best['hf']:.1f} ms/token)")
    figures["in_process_decode_tokens_per_s"] = round(best["loop"], 2)
    print(f"monolithic in-process greedy loop (one stage, no network): {best['loop']:.1f} tokens/s "
          f"({1000 / best['loop']:.1f} ms/token)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
