"""Re-placement over real runner processes: a fake Electricity Maps server on 127.0.0.1 makes the
running plan's grid dirty; the coordinator proposes and (auto) migrates while a client keeps
generating; every request completes with the monolithic model's tokens, none lost or repeated."""

from __future__ import annotations

import threading

import pytest

from engine.carbon import CarbonResolver
from engine.coordinator.embedded import EmbeddedCoordinator
from engine.coordinator.local_runners import runner_vram_gb
from engine.model import footprint, load_spec
from engine.planning.planner import make_plan
from engine.planning.types import Ingress, Policy, Weights
from tests.conftest import poll
from tests.engine.coordinator.conftest import greedy_monolithic, spawn_runner
from tests.engine.coordinator.test_end_to_end import CITIES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PROMPT = "Carbon moves"
MAX_NEW_TOKENS = 16
INGRESS = Ingress(lat=50.11, lon=8.68, name="Frankfurt")



def test_a_dirty_grid_moves_the_deployment_while_every_request_completes_identically(grids, tiny_model, tmp_path):
    from transformers import AutoTokenizer

    reference = greedy_monolithic(tiny_model, AutoTokenizer.from_pretrained(str(tiny_model))(PROMPT)["input_ids"],
                                  MAX_NEW_TOKENS)
    coordinator = EmbeddedCoordinator(f"sqlite:{tmp_path}/store.sqlite3", transport="tcp", bind_host="127.0.0.1")
    coordinator.start()
    processes = [spawn_runner(coordinator.ticket, peer_id, lat, lon, runner_vram_gb(str(tiny_model)), tmp_path)
                 for peer_id, (lat, lon) in CITIES.items()]
    stop = threading.Event()
    results, errors = [], []
    try:
        poll(lambda: len(coordinator.live_peers()) == 3, 60, "three runners")
        fp = footprint(load_spec(str(tiny_model)))
        plan = make_plan(fp, coordinator.swarm(INGRESS).peers, INGRESS, Policy.CARBON, Weights())
        assert {s.peer_id for s in plan.stages} == {"paris", "madrid"}       # the two cleanest grids
        old_id = coordinator.deploy(plan, model=str(tiny_model)).result(90)
        resolver = CarbonResolver(token=grids.token, api_url=grids.url + "/em", use_env=False, cache_ttl_s=0.0)
        coordinator.enable_replacement(resolver=resolver, period_s=3600.0, mode="auto")

        def client() -> None:
            while not stop.is_set():
                try:
                    results.append(coordinator.generate(PROMPT, MAX_NEW_TOKENS, chat=False).result(120))
                except Exception as exc:  # collected: the test fails on any
                    errors.append(exc)
                    return

        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        poll(lambda: len(results) >= 2, 60, "requests on the first plan")
        unchanged = coordinator.check_replacement().result(60)
        assert unchanged is not None and not unchanged.migrate           # nothing changed: stay

        grids.set_zone("FR", *CITIES["paris"], 3000)                      # Paris's grid turns dirty
        decision = coordinator.check_replacement().result(180)            # auto: proposes and moves
        assert decision.migrate, decision.reason
        assert decision.saving_fraction > 0.5 and decision.payback_s < 3600
        snapshot = coordinator.replacement_snapshot()
        [record] = snapshot["history"]
        assert record["outcome"] == "done" and set(record["to"]) == {"madrid", "warsaw"}
        status = coordinator.deployment_status()
        assert status["id"] != old_id and status["ready"]
        assert {s.peer_id for s in status["plan"].stages} == {"madrid", "warsaw"}
        done_before = len(results)
        poll(lambda: len(results) >= done_before + 2, 60, "requests on the new plan")
        stop.set()
        thread.join(120)
        assert not errors, errors
        assert all(r["token_ids"] == reference for r in results)          # every request identical
        assert {r["deployment_id"] for r in results} == {old_id, status["id"]}
        assert all(r["recoveries"] == 0 for r in results)
        paris = next(p for p in coordinator.live_peers() if p["id"] == "paris")
        assert paris["status"] == "live"                                   # released: holds no stage
    finally:
        stop.set()
        for process in processes:
            process.kill()
            process.wait(10)
        coordinator.stop()
