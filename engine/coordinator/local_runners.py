"""Runner processes on this machine, placed at demo-swarm cities, for demos without a real swarm.

Each gets a `--vram-gb` such that any two of them can hold the model (half the layers plus both
ends) but none can hold it alone: a plan over them needs several runners, and with three or more
one can die and the rest still hold the model.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from engine import GB
from engine.errors import InvalidInput
from engine.paths import REPO_ROOT, user_data_dir

MAX_LOCAL_RUNNERS = 16


@dataclass(frozen=True)
class City:
    peer_id: str
    name: str
    lat: float
    lon: float


def demo_cities(names: list[str] | None = None) -> list[City]:
    """Peers of the demo swarm as cities; `names` picks by id or city ("paris" or "paris-a100")."""
    from engine.swarm import DEMO_SWARM_PATH

    peers = json.loads(Path(DEMO_SWARM_PATH).read_text())["peers"]
    cities = [City(f"local-{p['id']}", p["id"].split("-")[0].replace("_", " ").title(), float(p["lat"]),
                   float(p["lon"])) for p in peers]
    if not names:
        return cities
    picked = []
    for name in names:
        key = name.strip().lower()
        match = next((c for c in cities if c.peer_id == f"local-{key}" or c.name.lower() == key), None)
        if match is None:
            raise InvalidInput("cities", name, "not a city of the demo swarm (assets/swarms/demo.json)")
        picked.append(match)
    return picked


def runner_vram_gb(model: str, quant: str = "bf16", stages: int = 2) -> float:
    """Free VRAM for each local runner: `stages` of them can hold `model` at `quant`, one fewer cannot
    (module docstring: two by default)."""
    from engine.model import footprint, load_spec

    if isinstance(stages, bool) or not isinstance(stages, int) or stages < 2:
        raise InvalidInput("stages", stages, "expected an integer >= 2")
    fp = footprint(load_spec(model), quant)     # a preset ("smollm2"), a config file or a model folder
    share = fp.stage_bytes(math.ceil(fp.num_layers / stages), first=True, last=True)
    more = fp.stage_bytes(math.ceil(fp.num_layers / (stages - 1)), first=True, last=True)
    # Midway between the two: usable VRAM (after the planner's safety margin) fits one share, not more.
    return (share + more) / 2 / (1.0 - fp.safety_margin) / GB


def spawn(ticket: str, n: int, model: str, cities: list[str] | None = None,
          log_dir: Path | None = None, emulate_wan: bool = True, wan_bandwidth_mbps: float | None = None,
          vram_gb: list[float] | None = None) -> list[subprocess.Popen[bytes]]:
    """Start `n` runner processes joining with `ticket`; their output goes to log files.

    `emulate_wan` (on by default: they sit at cities but on one machine): each delays its frames
    as the WAN between its city and the receiver's would (engine.transport.wan)."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_LOCAL_RUNNERS:
        raise InvalidInput("n", n, f"expected an integer in 1..{MAX_LOCAL_RUNNERS}")
    chosen = demo_cities(cities)
    if len(chosen) < n:
        raise InvalidInput("cities", cities, f"only {len(chosen)} cities for {n} runners")
    if vram_gb is not None and len(vram_gb) < n:
        raise InvalidInput("vram_gb", vram_gb, f"expected one figure per runner ({n})")
    vram_each = list(vram_gb) if vram_gb is not None else [runner_vram_gb(model)] * n
    log_dir = log_dir or user_data_dir() / "runner-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    processes = []
    for city, vram_gb_here in zip(chosen[:n], vram_each, strict=False):
        log_file: IO[bytes] = open(log_dir / f"{re.sub(r'[^A-Za-z0-9._-]', '_', city.peer_id)}.log", "ab")
        # The ticket goes in the environment: /proc/PID/environ is the owner's, the command line is not.
        command = [sys.executable, "-m", "engine.runner.agent",
                   "--lat", str(city.lat), "--lon", str(city.lon), "--vram-gb", f"{vram_gb_here:.6f}",
                   "--name", city.name, "--id", city.peer_id, "--exit-with-pid", str(os.getpid())]
        if emulate_wan:
            command.append("--emulate-wan")
            if wan_bandwidth_mbps is not None:
                command += ["--wan-bandwidth-mbps", str(wan_bandwidth_mbps)]
        processes.append(subprocess.Popen(command, cwd=str(REPO_ROOT), env={**env, "PRISMN_TICKET": ticket},
                                          stdout=log_file,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        log_file.close()            # the child holds its own descriptor
    return processes
