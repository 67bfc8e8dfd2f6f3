"""Measured against estimated on a live local swarm: the VRAM-only plan, then the carbon+distance plan.

Four local runners at demo-swarm cities (Paris, Stockholm, Warsaw, Ashburn) join an embedded
coordinator with the emulated WAN on (each frame delayed by engine.planning.latency's one-way
latency between the two places + transfer time). SmolLM2 with --vram-gb sized so that one runner
cannot hold it (plans need >= 2 stages); Warsaw and Ashburn report a little more free VRAM, so the
VRAM-only plan goes there while the carbon+distance plan stays near the ingress (Frankfurt).

Steps: start coordinator + runners -> for each policy: plan, deploy (each runner times its stage
and its round trips, engine.runner.calibrate), a 16-token generation whose step traces refine each
stage's measured compute, plan again with those measurements, generate --tokens new tokens, compare
the plan's estimate with what the ingress measured -> frames the coordinator saw per token.

    .venv/bin/python benchmarks/bench_live.py [--json] [--tokens 32] [--transport tcp]

With --json the last line is one JSON object (see the issue). Figures on a shared CPU machine are
noisy: the estimate uses what the runners measured a moment before, the live run what they do now.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.coordinator import local_runners  # noqa: E402
from engine.coordinator.embedded import EmbeddedCoordinator  # noqa: E402
from engine.geo import haversine_km  # noqa: E402
from engine.model import footprint, load_spec  # noqa: E402
from engine.planning.latency import one_way_ms  # noqa: E402
from engine.planning.planner import plan_both  # noqa: E402
from engine.planning.types import Ingress, Weights  # noqa: E402

CITIES = ["paris", "stockholm", "warsaw", "ashburn"]
VRAM_FACTORS = [0.9, 0.9, 1.0, 1.0]       # x the size where two runners hold the model, one cannot
INGRESS = Ingress(lat=50.1109, lon=8.6821, name="Frankfurt")
MODEL = "smollm2"
PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"timed out after {timeout_s} s waiting for {what}")


def plans(coordinator: EmbeddedCoordinator, fp):
    swarm = coordinator.swarm(INGRESS, model=fp.name)
    return plan_both(fp, swarm.peers, INGRESS, Weights())


def measured_rtts_in(coordinator: EmbeddedCoordinator, fp, plan) -> bool:
    peers = {p.id: p for p in coordinator.swarm(INGRESS, model=fp.name).peers}
    return all(peers[s.peer_id].rtt_ms is not None for s in plan.stages)


def star_vs_tour_ms(plan) -> tuple[float, float]:
    """Network ms per token through a star (ingress <-> every stage) and along the tour, by the model."""
    places = [(s.lat, s.lon) for s in plan.stages]
    ingress = (INGRESS.lat, INGRESS.lon)
    star = sum(2 * float(one_way_ms(haversine_km(*ingress, *p))) for p in places)
    legs = [ingress, *places, ingress]
    tour = sum(float(one_way_ms(haversine_km(*a, *b))) for a, b in zip(legs, legs[1:], strict=False))
    return star, tour


def run_policy(coordinator: EmbeddedCoordinator, fp, policy: str, tokens: int) -> dict:
    pick = 0 if policy == "vram" else 1
    # Calibration: deploy, let the runners time their stages and links, and run a short generation
    # whose step traces refine each stage's compute; then plan again with those measurements.
    first = plans(coordinator, fp)[pick]
    coordinator.deploy(first, model=MODEL).result(600)
    wait_for(lambda: measured_rtts_in(coordinator, fp, first), 60, "round trips")
    coordinator.generate(PROMPT, 16).result(300)
    plan = plans(coordinator, fp)[pick]
    coordinator.deploy(plan, model=MODEL).result(600)            # the same stages: nothing to load
    before = coordinator.frame_counts()
    result = coordinator.generate(PROMPT, tokens).result(600)
    after = coordinator.frame_counts()
    measured = result["measured"]
    generated = len(result["token_ids"])
    frames = (after["sent"].get("forward", 0) - before["sent"].get("forward", 0)
              + after["received"].get("result", 0) - before["received"].get("result", 0))
    star_ms, tour_ms = star_vs_tour_ms(plan)
    return {
        "plan": plan, "result": result,
        "row": {"stages": len(plan.stages),
                "estimated_ms_per_token": plan.metrics.est_ms_per_token,
                "measured_ms_per_token": measured["decode_ms_per_token"],
                "estimated_g_co2": plan.metrics.g_co2_per_1k_tokens * generated / 1000.0,
                "measured_g_co2": measured["g_co2"]},
        "frames_per_token": frames / generated,
        "hidden": after["hidden_state_frames"] - before["hidden_state_frames"],
        "star_ms": star_ms, "tour_ms": tour_ms,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--transport", default="tcp", choices=("tcp", "iroh"))
    parser.add_argument("--vram-gb", type=float, default=None,
                        help="base free VRAM per runner (default: two runners hold SmolLM2, one cannot)")
    parser.add_argument("--wan-bandwidth-mbps", type=float, default=None)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per runner (default: torch's own choice, the physical cores)")
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)          # inherited by the runners

    fp = footprint(load_spec(MODEL))
    base_gb = args.vram_gb or local_runners.runner_vram_gb(MODEL)
    from engine.paths import user_data_dir

    shared_models = user_data_dir() / "models"          # the converted SmolLM2, made once per machine
    shared_models.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="prismn-bench-live-"))
    (home / "models").symlink_to(shared_models, target_is_directory=True)
    os.environ["PRISMN_HOME"] = str(home)               # its own store and ticket
    coordinator = EmbeddedCoordinator(f"sqlite:{home}/prismn.sqlite3", transport=args.transport,
                                      bind_host="127.0.0.1", model_source=MODEL)
    coordinator.start()
    processes = local_runners.spawn(coordinator.ticket, len(CITIES), MODEL, CITIES, log_dir=home,
                                    wan_bandwidth_mbps=args.wan_bandwidth_mbps,
                                    vram_gb=[base_gb * f for f in VRAM_FACTORS])
    try:
        started = time.monotonic()
        wait_for(lambda: len(coordinator.live_peers()) == len(CITIES), 300, "the runners to join")
        print(f"# {len(CITIES)} runners joined in {time.monotonic() - started:.1f} s "
              f"(emulated WAN, {args.transport}); logs in {home}", file=sys.stderr)
        runs = {policy: run_policy(coordinator, fp, policy, args.tokens) for policy in ("vram", "carbon")}
    finally:
        for process in processes:
            process.kill()
            process.wait(10)
        coordinator.stop()

    for policy, run in runs.items():
        row, plan = run["row"], run["plan"]
        error = abs(row["measured_ms_per_token"] - row["estimated_ms_per_token"]) / row["measured_ms_per_token"]
        tour = " -> ".join(["ingress", *(f"{s.peer_id}[{s.layer_start}:{s.layer_end}]" for s in plan.stages),
                            "ingress"])
        print(f"{policy:6s} {tour}")
        print(f"       ms/token estimated {row['estimated_ms_per_token']:.1f} (compute "
              f"{', '.join(f'{s.est_compute_ms:.1f} {s.compute_source}' for s in plan.stages)}), measured "
              f"{row['measured_ms_per_token']:.1f} (compute "
              f"{', '.join(f'{ms:.1f}' for ms in run['result']['measured']['stage_compute_ms'])}; "
              f"network {run['result']['measured']['network_ms_per_token']:.1f}); |diff| {100 * error:.1f} % "
              f"of measured")
        print(f"       gCO2 for {len(run['result']['token_ids'])} tokens: estimated {row['estimated_g_co2']:.3g}, "
              f"measured {row['measured_g_co2']:.3g} ({run['result']['measured']['energy_method']}); "
              f"TTFT {run['result']['measured']['ttft_s']:.2f} s")
        print(f"       network per token by the latency model: star {run['star_ms']:.1f} ms, tour "
              f"{run['tour_ms']:.1f} ms (tour saves {100 * (1 - run['tour_ms'] / run['star_ms']):.1f} %)")
    frames = max(run["frames_per_token"] for run in runs.values())
    hidden = sum(run["hidden"] for run in runs.values())
    print(f"coordinator frames per token: {frames:g}; hidden-state frames via the coordinator: {hidden}")
    if args.json:
        print(json.dumps({"plans": {policy: run["row"] for policy, run in runs.items()},
                          "coordinator_frames_per_token": frames, "hidden_state_frames_via_coordinator": hidden}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
