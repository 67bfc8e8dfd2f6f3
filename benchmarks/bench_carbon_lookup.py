"""Carbon lookup by location at scale: `python -m engine plan` on 100 vs 10,000 peers from a peers file.

Peers sit within ±0.3° of the demo swarm's 44 cities and state no carbon value, so every one goes
through the offline lookup by location (one bulk spatial query; some land at sea and take the
nearest-country path). The National Grid API is switched off (PRISMN_NATIONALGRID=0) and no token is
set, so the figures measure the lookup, not a network. Goal: 10,000 peers cost <= 0.3 s more than 100.
Wall time of the whole CLI process (imports included), median of 5 runs each, and its CPU time
(user + system, from getrusage): on a shared, loaded machine the CPU figure is the steadier one.
"""

from __future__ import annotations

import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.swarm import DEMO_SWARM_PATH, synthetic_peers  # noqa: E402

RUNS = 5


def peers_file(count: int, folder: Path) -> Path:
    demo = json.loads(DEMO_SWARM_PATH.read_text())
    cities = [(p["lat"], p["lon"]) for p in demo["peers"]]
    rnd = random.Random(3)
    peers = synthetic_peers(count)
    for peer in peers:
        lat, lon = rnd.choice(cities)
        peer["lat"] = round(lat + rnd.uniform(-0.3, 0.3), 4)
        peer["lon"] = round(lon + rnd.uniform(-0.3, 0.3), 4)
        del peer["carbon_g_per_kwh"]
    path = folder / f"peers_{count}.json"
    path.write_text(json.dumps({"ingress": demo["ingress"], "peers": peers}))
    return path


def cli_seconds(path: Path) -> tuple[float, float]:
    """(wall s, CPU s of the child: user + system) for one CLI run."""
    env = dict(os.environ, PRISMN_NATIONALGRID="0")
    env.pop("ELECTRICITYMAPS_TOKEN", None)
    env.pop("WATTTIME_USERNAME", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "engine", "plan", "--model", "llama-3.1-70b", "--peers", str(path)],
                   cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        files = {n: peers_file(n, Path(folder)) for n in (100, 10_000)}
        times: dict[int, list[tuple[float, float]]] = {n: [] for n in files}
        for _ in range(RUNS):
            for n, path in files.items():   # interleaved, so machine load hits both alike
                times[n].append(cli_seconds(path))
    print(f"load average (1 min) before: {load_before:.1f}, after: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    wall = {n: statistics.median(w for w, _ in t) for n, t in times.items()}
    cpu = {n: statistics.median(c for _, c in t) for n, t in times.items()}
    for n, t in times.items():
        print(f"{n:>6} peers: wall median {wall[n]:.3f} s, CPU median {cpu[n]:.3f} s  "
              f"(wall runs: {', '.join(f'{w:.2f}' for w, _ in t)})")
    for name, figures in (("wall", wall), ("CPU", cpu)):
        extra = figures[10_000] - figures[100]
        print(f"10,000 vs 100 peers, {name}: +{extra:.3f} s (goal <= 0.3 s): {'met' if extra <= 0.3 else 'NOT met'}")


if __name__ == "__main__":
    main()
