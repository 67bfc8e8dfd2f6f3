"""Planner speed and tour quality. Run: .venv/bin/python benchmarks/bench_planner.py [--quick]

1. make_plan time for 100 / 1,000 / 10,000 random peers (median of several runs), both policies,
   over a model mix from one stage (8B bf16) to dozens (405B bf16 on the carbon policy, whose
   greenest peers are often small). Goals: 10,000 peers <= 100 ms median, 100 -> 10,000 <= 30x.
2. Closed-tour length of the planner's heuristic (engine.planning.tour_heuristics) vs LKH
   (elkai) on 100 stages + ingress, integer metres for elkai. Goal: <= 1 % longer.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.carbon_values import CarbonSource  # noqa: E402
from engine.geo import pairwise_km, unit_vectors  # noqa: E402
from engine.model.footprint import ModelFootprint  # noqa: E402
from engine.planning.ordering import tour_length  # noqa: E402
from engine.planning.planner import make_plan  # noqa: E402
from engine.planning.tour_heuristics import heuristic_cycle  # noqa: E402
from engine.planning.types import Ingress, Peer, Policy, Weights  # noqa: E402

GPUS = [("RTX 4090", 24), ("RTX 3090", 24), ("A100 80GB", 80), ("H100 80GB", 80), ("L4", 24),
        ("T4", 16), ("RTX 4080", 16), ("A100 40GB", 40), ("RTX A6000", 48), (None, 12)]


def llama_like(name: str, layers: int, hidden: int, layer_params: int, vocab: int,
               bytes_per_param: float, kv_heads: int) -> ModelFootprint:
    """A decoder-only footprint from a few shape figures (context 4096, batch 1)."""
    embedding = int(vocab * hidden * bytes_per_param)
    return ModelFootprint(
        name=name, num_layers=layers, param_count=layers * layer_params + 2 * vocab * hidden,
        quant="bf16" if bytes_per_param == 2 else "int4",
        layer_bytes=int(layer_params * bytes_per_param), embedding_bytes=embedding,
        final_norm_bytes=hidden * 2, lm_head_bytes=embedding, tied_embeddings=False,
        kv_bytes_per_layer=2 * kv_heads * 128 * 4096 * 2, activation_bytes=512 * 2**20,
        layer_flops_per_token=2 * layer_params, head_flops_per_token=2 * vocab * hidden)


MODELS = [
    llama_like("llama-3.1-8b bf16", 32, 4096, 218_000_000, 128_256, 2, 8),
    llama_like("llama-3.1-70b bf16", 80, 8192, 856_000_000, 128_256, 2, 8),
    llama_like("llama-3.1-405b int4", 126, 16384, 3_190_000_000, 128_256, 0.53, 8),
    llama_like("llama-3.1-405b bf16", 126, 16384, 3_190_000_000, 128_256, 2, 8),
]


def random_peers(n: int, seed: int) -> tuple[Peer, ...]:
    rng = np.random.default_rng(seed)
    lat = np.degrees(np.arcsin(rng.uniform(-0.7, 0.95, n)))
    lon = rng.uniform(-180, 180, n)
    kinds = rng.integers(0, len(GPUS), n)
    free_fraction = rng.uniform(0.15, 1.0, n)
    carbon = rng.uniform(15, 900, n)
    rtt = np.where(rng.uniform(size=n) < 0.2, rng.uniform(5, 300, n), np.nan)
    return tuple(
        Peer(id=f"peer-{i}", lat=float(lat[i]), lon=float(lon[i]),
             free_vram_gb=round(GPUS[kinds[i]][1] * float(free_fraction[i]), 2),
             carbon_g_per_kwh=float(carbon[i]), carbon_source=CarbonSource.REGION,
             gpu=GPUS[kinds[i]][0], rtt_ms=None if np.isnan(rtt[i]) else float(rtt[i]))
        for i in range(n))


def time_plans(sizes: list[int], repeats: dict[int, int]) -> dict[int, list[float]]:
    ingress = Ingress(50.11, 8.68, "frankfurt")
    print("\n== make_plan time (median ms) ==")
    print(f"{'peers':>7}  {'model':<22}{'policy':<8}{'stages':>7}{'median ms':>11}{'min ms':>9}")
    per_size: dict[int, list[float]] = {}
    for n in sizes:
        peers = random_peers(n, seed=n)
        per_size[n] = []
        for fp in MODELS:
            for policy in Policy:
                samples = []
                for _ in range(repeats[n]):
                    start = time.perf_counter()
                    plan = make_plan(fp, peers, ingress, policy, Weights())
                    samples.append((time.perf_counter() - start) * 1000)
                median = statistics.median(samples)
                per_size[n].append(median)
                stages = len(plan.stages) if plan.feasible else "infeas"
                print(f"{n:>7}  {fp.name:<22}{policy.value:<8}{stages:>7}{median:>11.1f}"
                      f"{min(samples):>9.1f}")
    print(f"\n{'peers':>7}{'median over mix':>17}{'worst case':>12}")
    for n in sizes:
        print(f"{n:>7}{statistics.median(per_size[n]):>15.1f} ms{max(per_size[n]):>9.1f} ms")
    return per_size


def tour_quality(instances: int) -> None:
    import elkai

    print("\n== tour length: heuristic vs LKH (elkai), 100 stages + ingress ==")
    print(f"{'seed':>5}{'heuristic km':>14}{'LKH km':>12}{'longer':>9}{'heur ms':>9}{'LKH ms':>9}")
    gaps, heur_ms, lkh_ms = [], [], []
    for seed in range(instances):
        rng = np.random.default_rng(1000 + seed)
        lat = np.degrees(np.arcsin(rng.uniform(-0.7, 0.95, 101)))
        lon = rng.uniform(-180, 180, 101)
        dist = pairwise_km(lat, lon)
        start = time.perf_counter()
        tour = heuristic_cycle(dist, unit_vectors(lat, lon))
        heur_ms.append((time.perf_counter() - start) * 1000)
        metres = np.rint(dist * 1000).astype(np.int64).tolist()
        start = time.perf_counter()
        lkh = elkai.DistanceMatrix(metres).solve_tsp()
        lkh_ms.append((time.perf_counter() - start) * 1000)
        lkh = lkh[:-1] if lkh[0] == lkh[-1] else lkh
        ours, best = tour_length(dist, tour), tour_length(dist, lkh)
        gaps.append((ours / best - 1) * 100)
        print(f"{seed:>5}{ours:>14.0f}{best:>12.0f}{gaps[-1]:>8.2f}%{heur_ms[-1]:>9.0f}{lkh_ms[-1]:>9.0f}")
    print(f"{'mean':>5}{'':>26}{statistics.mean(gaps):>8.2f}%{statistics.median(heur_ms):>9.0f}"
          f"{statistics.median(lkh_ms):>9.0f}   (max {max(gaps):.2f}%; ms are medians)")


def main() -> None:
    quick = "--quick" in sys.argv
    sizes = [100, 1_000, 10_000]
    repeats = {100: 5, 1_000: 5, 10_000: 3} if quick else {100: 9, 1_000: 7, 10_000: 7}
    per_size = time_plans(sizes, repeats)
    growth = statistics.median(per_size[10_000]) / statistics.median(per_size[100])
    per_config = [big / small for big, small in zip(per_size[10_000], per_size[100], strict=True)]
    print(f"\ngrowth 100 -> 10,000 peers (median over mix): {growth:.1f}x  (goal <= 30x); "
          f"per model+policy: {min(per_config):.1f}x .. {max(per_config):.1f}x")
    print(f"10,000 peers median over mix: {statistics.median(per_size[10_000]):.1f} ms (goal <= 100 ms)")
    tour_quality(3 if quick else 8)


if __name__ == "__main__":
    main()
