"""Greedy plan vs exact MILP. Run: .venv/bin/python benchmarks/bench_exact.py [--swarms N] [--time-limit S]

Random swarms of 20-60 peers (bench_planner's generator: GPUs from the table, 15-100 % of their
memory free, 15-900 gCO2/kWh, a fifth with measured RTTs), alternating Llama-3.1-70B bf16 and
Llama-3.1-405B int4 shapes, ingress Frankfurt, default weights (carbon 0.6, distance 0.3, vram 0.1),
no targets. For each: the greedy plan to targets (engine.planning.to_targets) and the exact MILP
(engine.planning.exact.solve), both scoring the same objective J.
Prints: the greedy's gap to the proven bound (median, p95, worst), how often the greedy is optimal
(gap <= 1e-6), the exact solve time (wall: median, p95, max; and at 50-60 peers; and CPU seconds, which a
shared machine does not inflate), time-limit hits (HiGHS's limit is wall-clock).
Goals: exact solve <= 10 s at 60 peers; greedy median gap <= 2 %.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_planner import MODELS, random_peers  # noqa: E402
from engine.planning.exact import solve  # noqa: E402
from engine.planning.targets import Targets  # noqa: E402
from engine.planning.to_targets import greedy_plan, prepare_targets  # noqa: E402
from engine.planning.types import Ingress, Weights  # noqa: E402

SHAPES = [m for m in MODELS if m.name in ("llama-3.1-70b bf16", "llama-3.1-405b int4")]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--swarms", type=int, default=100)
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    ingress = Ingress(50.11, 8.68, "frankfurt")
    rng = np.random.default_rng(args.seed)
    gaps, solve_s, greedy_s, big_solve_s, solve_cpu_s = [], [], [], [], []
    optimal = limit_hits = skipped = 0
    print(f"{'#':>3} {'peers':>5}  {'model':<20}{'stages g/x':>11}{'J greedy':>10}{'J exact':>10}"
          f"{'gap %':>8}{'greedy ms':>10}{'solve s':>9}{'cpu s':>8}  proven")
    done = 0
    while done < args.swarms:
        n = int(rng.integers(20, 61))
        fp = SHAPES[done % len(SHAPES)]
        peers = random_peers(n, seed=int(rng.integers(1 << 30)))
        ti = prepare_targets(fp, peers, ingress, Weights(), Targets())
        if ti.objective is None:
            skipped += 1            # the swarm cannot hold the model: draw another
            continue
        t0 = time.perf_counter()
        greedy = greedy_plan(ti)
        t1, c1 = time.perf_counter(), time.process_time()
        exact = solve(ti, "objective", ti.targets, args.time_limit)
        t2, c2 = time.perf_counter(), time.process_time()
        solve_cpu_s.append(c2 - c1)
        j_greedy = ti.objective.value(greedy.metrics)
        bound = min(exact.bound, exact.value, j_greedy)
        gap = max(0.0, j_greedy - bound) / bound
        gaps.append(gap)
        solve_s.append(t2 - t1)
        greedy_s.append(t1 - t0)
        if n >= 50:
            big_solve_s.append(t2 - t1)
        optimal += gap <= 1e-6
        limit_hits += not exact.proven_optimal
        done += 1
        print(f"{done:>3} {n:>5}  {fp.name:<20}{greedy.metrics.peers_used:>5}/{exact.plan.metrics.peers_used:<5}"
              f"{j_greedy:>10.4f}{exact.value:>10.4f}{gap * 100:>8.2f}{(t1 - t0) * 1000:>10.1f}"
              f"{t2 - t1:>9.2f}{c2 - c1:>8.2f}  {'yes' if exact.proven_optimal else 'no (time limit)'}", flush=True)
    print(f"\n== {done} swarms of 20-60 peers ({skipped} infeasible draws skipped), "
          f"time limit {args.time_limit:g} s ==")
    print(f"greedy gap to the exact bound: median {statistics.median(gaps) * 100:.2f} %, "
          f"p95 {pct(gaps, 95) * 100:.2f} %, worst {max(gaps) * 100:.2f} %")
    print(f"greedy optimal (gap <= 1e-6): {optimal}/{done} ({optimal / done:.0%})")
    print(f"exact solve: median {statistics.median(solve_s):.2f} s, p95 {pct(solve_s, 95):.2f} s, "
          f"max {max(solve_s):.2f} s; at 50-60 peers median {statistics.median(big_solve_s):.2f} s, "
          f"max {max(big_solve_s):.2f} s; time limit hit {limit_hits}/{done}")
    print(f"exact solve CPU time (this process; wall time above includes waiting for a core): "
          f"median {statistics.median(solve_cpu_s):.2f} s, p95 {pct(solve_cpu_s, 95):.2f} s")
    print(f"greedy plan to targets: median {statistics.median(greedy_s) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
