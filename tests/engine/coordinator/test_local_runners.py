"""Local runners: placed at demo-swarm cities, sized so a plan needs several, gone with their app."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine.carbon_values import CarbonSource
from engine.coordinator.local_runners import demo_cities, runner_vram_gb
from engine.errors import InvalidInput
from engine.model import footprint, load_spec
from engine.paths import REPO_ROOT
from engine.planning.planner import make_plan
from engine.planning.types import Ingress, Peer, Policy, Weights
from tests.conftest import poll

INGRESS = Ingress(lat=50.11, lon=8.68)


def test_cities_come_from_the_demo_swarm_by_city_or_id():
    paris, oslo = demo_cities(["Paris", "oslo-rtx4090"])
    assert (paris.name, paris.lat, paris.lon) == ("Paris", 48.8566, 2.3522)
    assert oslo.peer_id == "local-oslo-rtx4090"
    with pytest.raises(InvalidInput, match="cities"):
        demo_cities(["atlantis"])


@pytest.mark.parametrize("model", ["smollm2", "llama-3.2-1b"])
def test_one_local_runner_cannot_hold_the_model_and_any_two_can(model):
    vram_gb = runner_vram_gb(model)
    fp = footprint(load_spec(model))
    peers = tuple(Peer(id=c.peer_id, lat=c.lat, lon=c.lon, free_vram_gb=vram_gb, carbon_g_per_kwh=300.0,
                       carbon_source=CarbonSource.EXPLICIT) for c in demo_cities()[:3])
    assert not make_plan(fp, peers[:1], INGRESS, Policy.VRAM, Weights()).feasible
    for pair in ((0, 1), (0, 2), (1, 2)):
        plan = make_plan(fp, tuple(peers[i] for i in pair), INGRESS, Policy.CARBON, Weights())
        assert plan.feasible and len(plan.stages) == 2


def test_local_runners_end_when_the_app_that_spawned_them_is_killed(tmp_path):
    app = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from engine.coordinator.local_runners import spawn\n"
         "from engine.protocol.ticket import Ticket\n"
         f"ps = spawn(Ticket('127.0.0.1:9', 'x', '00' * 32).encode(), 2, 'smollm2', log_dir=__import__('pathlib').Path({str(tmp_path)!r}))\n"
         "print(' '.join(str(p.pid) for p in ps), flush=True)\n"
         "time.sleep(120)\n"],
        cwd=str(REPO_ROOT), stdout=subprocess.PIPE, text=True)
    runner_pids = [int(pid) for pid in app.stdout.readline().split()]
    assert len(runner_pids) == 2
    for pid in runner_pids:         # the ticket (join secret) is not on a command line others can read
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            assert b"prismn1." not in handle.read()
    app.kill()                  # no clean-up runs in the app: the runners must notice by themselves
    app.wait()
    # A runner watches its parent once its imports are done: seconds when quiet, up to a minute or more
    # on a loaded 2-core machine. The point is that they end by themselves, not how fast.
    poll(lambda: not any(_running(pid) for pid in runner_pids), 120,
         lambda: f"runners {[pid for pid in runner_pids if _running(pid)]} to end with their app")


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"       # a zombie has exited
    except FileNotFoundError:
        return False
