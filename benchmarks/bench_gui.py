"""GUI speed figures: launch -> window with map drawn, and slider release -> both plans redrawn.

Goals (issue 3): map visible <= 5 s after launch; slider release -> both plans recomputed and
drawn <= 200 ms for a 500-peer swarm. Runs under the current DISPLAY, or starts its own Xvfb.

    .venv/bin/python benchmarks/bench_gui.py [--peers 500] [--launches 3] [--releases 20]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


def synthetic_swarm(path: Path, count: int, seed: int = 7) -> Path:
    rnd = random.Random(seed)
    gpus = [("RTX 4090", 24), ("A100 80GB", 80), ("H100 80GB", 80), ("RTX 3090", 24), ("L40S", 48)]
    peers = []
    for i in range(count):
        gpu, vram = rnd.choice(gpus)
        peers.append({"id": f"p{i:04d}", "lat": round(rnd.uniform(-40, 62), 3),
                      "lon": round(rnd.uniform(-125, 150), 3), "gpu": gpu,
                      "free_vram_gb": round(vram * rnd.uniform(0.3, 0.95), 1),
                      "carbon_g_per_kwh": round(rnd.uniform(15, 750), 1)})
    path.write_text(json.dumps({"ingress": {"name": "Frankfurt", "lat": 50.11, "lon": 8.68}, "peers": peers}))
    return path


def start_xvfb() -> subprocess.Popen | None:
    if os.environ.get("DISPLAY"):
        return None
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x800x24",
                             "-nolisten", "tcp"], pass_fds=(write_fd,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        os.environ["DISPLAY"] = ":" + pipe.readline().strip()
    return xvfb


def measure_launch(swarm: Path, workdir: Path) -> tuple[float, float]:
    """Seconds from spawning `python main.py` to the first state written after the map drew."""
    state_file = workdir / "launch_state.json"
    state_file.unlink(missing_ok=True)
    env = dict(os.environ, PRISMN_STATE_FILE=str(state_file))
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "main.py", "--swarm", str(swarm)], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - started < 60:
            try:
                state = json.loads(state_file.read_text())
            except (OSError, ValueError):
                state = None
            if state and state.get("map_draws", 0) >= 1 and state.get("update", 0) >= 1:
                return time.perf_counter() - started, state["seconds_since_start"]
            time.sleep(0.01)
        raise RuntimeError("the window never reported a drawn map")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def measure_releases(swarm: Path, releases: int) -> tuple[list[float], list[float]]:
    """In-process: set the sliders as a release would, pump Tk until both plans are applied and drawn."""
    from engine.planning.types import Weights
    from prismn_gui.app import PrismnApp, parse_args

    app = PrismnApp(parse_args(["--swarm", str(swarm)]))
    root = app.root

    def pump_until(predicate, timeout_s=30.0):
        deadline = time.perf_counter() + timeout_s
        while not predicate():
            if time.perf_counter() > deadline:
                raise RuntimeError("timed out waiting for the window")
            root.update()
            time.sleep(0.001)

    pump_until(lambda: app.update_number >= 1 and app.map_draws >= 1)
    total_ms, compute_ms = [], []
    rnd = random.Random(3)
    for _ in range(releases):
        weights = Weights(round(rnd.uniform(0.05, 1), 2), round(rnd.uniform(0.05, 1), 2), round(rnd.uniform(0, 0.5), 2))
        updates, draws, started = app.update_number, app.map_draws, time.perf_counter()
        app.controls.set_weights(weights, notify=True)
        applied = {}

        def drawn_after_apply(u=updates, w=weights) -> bool:
            if "draws" not in applied and app.update_number > u and app.outcome.request.weights == w:
                applied["draws"] = app.map_draws_at_apply
            return "draws" in applied and app.map_draws > applied["draws"]
        pump_until(drawn_after_apply)
        total_ms.append((time.perf_counter() - started) * 1000)
        compute_ms.append(app.outcome.compute_ms)
    app.close()
    return total_ms, compute_ms


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--peers", type=int, default=500)
    parser.add_argument("--launches", type=int, default=3)
    parser.add_argument("--releases", type=int, default=20)
    args = parser.parse_args()
    xvfb = start_xvfb()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            swarm = synthetic_swarm(workdir / "swarm.json", args.peers)
            launches = [measure_launch(swarm, workdir) for _ in range(args.launches)]
            outside = [a for a, _ in launches]
            inside = [b for _, b in launches]
            print(f"launch -> map drawn ({args.peers} peers, {args.launches} runs): "
                  f"median {statistics.median(outside):.2f} s, max {max(outside):.2f} s "
                  f"(in-app since start {statistics.median(inside):.2f} s)  goal <= 5 s")
            total, compute = measure_releases(swarm, args.releases)
            total.sort()
            p90 = total[int(0.9 * (len(total) - 1))]
            print(f"slider release -> both plans computed + map drawn ({args.peers} peers, {args.releases} runs): "
                  f"median {statistics.median(total):.0f} ms, p90 {p90:.0f} ms, max {max(total):.0f} ms  goal <= 200 ms")
            print(f"  of which plan_both (worker): median {statistics.median(compute):.0f} ms, max {max(compute):.0f} ms")
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
