"""The headless coordinator re-places like the app: `python -m engine.coordinator ... --replan-every 2s`
with Electricity Maps played by a fake server on 127.0.0.1 (configured through the environment, as a
user would). Paris's grid turns dirty while a client keeps generating through the OpenAI-compatible
API; the coordinator migrates on its own schedule and every completion is the monolithic model's
greedy text, none lost or repeated."""

from __future__ import annotations

import threading

import httpx
import pytest

from benchmarks.headless import Process, free_port
from engine.coordinator.local_runners import runner_vram_gb
from tests.conftest import poll
from tests.engine.coordinator.conftest import greedy_monolithic, spawn_runner
from tests.engine.coordinator.test_end_to_end import CITIES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

PROMPT = "Carbon moves"
MAX_NEW_TOKENS = 16



def test_the_headless_coordinator_migrates_on_its_schedule_while_every_completion_stays_identical(
        grids, tiny_model, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    reference = greedy_monolithic(tiny_model, tokenizer(PROMPT)["input_ids"], MAX_NEW_TOKENS)
    reference_text = tokenizer.decode(reference, skip_special_tokens=True)
    port = free_port()
    coordinator = Process(["-m", "engine.coordinator", "--transport", "tcp", "--bind-host", "127.0.0.1",
                           "--store", f"sqlite:{tmp_path}/store.sqlite3", "--api-bind", f"127.0.0.1:{port}",
                           "--model", str(tiny_model), "--quant", "fp32", "--min-peers", "3",
                           "--ingress", "50.11,8.68", "--replan-every", "2s", "--replan-threshold", "0.1",
                           "--replan-horizon-h", "1", "--signal", "average"])
    runners = []
    stop = threading.Event()
    results, errors = [], []
    try:
        ticket = coordinator.wait_line("ticket: ", 60).split(": ", 1)[1]
        url = coordinator.wait_line("api: ", 30).split(": ", 1)[1]
        runners = [spawn_runner(ticket, peer_id, lat, lon, runner_vram_gb(str(tiny_model), "fp32"), tmp_path)
                   for peer_id, (lat, lon) in CITIES.items()]
        planned = coordinator.wait_line("planned ", 120)
        assert "paris" in planned and "madrid" in planned and "warsaw" not in planned   # the two cleanest
        old_id = coordinator.wait_line("deployed ", 120).split()[1]
        model_id = httpx.get(url + "/models", timeout=30).json()["data"][0]["id"]

        def client() -> None:
            with httpx.Client(timeout=120) as http:
                while not stop.is_set():
                    try:
                        reply = http.post(url + "/completions", json={
                            "model": model_id, "prompt": PROMPT, "max_tokens": MAX_NEW_TOKENS, "temperature": 0})
                        reply.raise_for_status()
                        results.append(reply.json())
                    except Exception as exc:  # collected: the test fails on any
                        errors.append(exc)
                        return

        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        coordinator.wait_line("replan: stay", 60)                          # the schedule runs; nothing changed
        assert not any(line.startswith("migrated") for line in coordinator.seen)

        grids.set_zone("FR", *CITIES["paris"], 3000)                      # Paris's grid turns dirty
        migrated = coordinator.wait_line("migrated ", 240)
        moved_to = migrated.split(" -> ", 1)[1].split(":", 1)[0]
        assert set(moved_to.split(",")) == {"madrid", "warsaw"} and ": done in " in migrated, migrated
        assert any(line.startswith("replan: migrate: saves") for line in coordinator.seen)
        # the watch loop may have announced the new deployment before the migration's own line
        announced = [line for line in coordinator.seen if line.startswith("deployed ") and old_id not in line]
        new_id = (announced[0] if announced else coordinator.wait_line("deployed ", 60)).split()[1]
        assert new_id != old_id
        done_before = len(results)
        poll(lambda: len(results) >= done_before + 2 or errors, 120, "requests on the new plan")
        stop.set()
        thread.join(120)
        assert not errors, errors
        assert len(results) >= done_before + 2, "no requests completed on the new plan"
        for reply in results:                                              # every request identical
            assert reply["choices"][0]["text"] == reference_text
            assert reply["usage"]["completion_tokens"] == MAX_NEW_TOKENS
            assert reply["prismn"]["recoveries"] == 0
        assert {r["prismn"]["deployment_id"] for r in results} == {old_id, new_id}
    finally:
        stop.set()
        for process in runners:
            process.kill()
            process.wait(10)
        coordinator.stop()
