"""A coordinator SIGKILLed mid-deployment or mid-migration, then started again (the headless command)
on the same store, SQLite and MongoDB (a private nx-27017): the deployment in the store is taken up
again (the same id, its runners rejoining by themselves), no runner is lost, and a client calling the
API meanwhile is refused clearly (no connection while it is down; 503 in OpenAI's error shape with
Retry-After while its runners come back) and then answered as the monolithic model answers.

One runner is held stopped (SIGSTOP) across the restart and let go once the client has seen its
503: a runner slow to come back, and the window in which the API must say "retry" made certain.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import uuid

import httpx
import pytest

from benchmarks.headless import (
    HeadlessSwarm,
    Process,
    coordinator_args,
    free_port,
    start_headless,
    start_runners,
)
from benchmarks.soak import PROMPTS, Request, references
from engine.coordinator.local_runners import runner_vram_gb
from engine.store import open_store
from tests.conftest import poll

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

RUNNERS = {"paris": (48.86, 2.35), "frankfurt": (50.11, 8.68), "stockholm": (59.33, 18.07),
           "madrid": (40.42, -3.70)}
RESTARTED = ("--quant", "fp32", "--ready-wait-s", "1")
MAX_TOKENS = 12
PLANNED = re.compile(r"^planned .*: (.*)$")


class Caller:
    """A client asking the same completion every 0.1 s until it is answered (a thread)."""

    def __init__(self, url: str, model: str, deadline_s: float) -> None:
        self.url, self.model, self.deadline_s = url, model, deadline_s
        self.refused = 0                                   # no connection: the coordinator is down
        self.deployment_id = ""                            # the deployment that answered in the end
        self.answers: list[httpx.Response] = []            # every HTTP answer, in order
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=60) as http:
            while time.monotonic() < self.deadline_s:
                try:
                    answer = http.post(self.url + "/completions", json={
                        "model": self.model, "prompt": PROMPTS[0], "max_tokens": MAX_TOKENS, "temperature": 0})
                except httpx.TransportError:
                    self.refused += 1
                else:
                    self.answers.append(answer)
                    if answer.status_code == 200:
                        return
                time.sleep(0.1)

    def seen_503(self) -> bool:
        return any(a.status_code == 503 for a in self.answers)


@pytest.fixture(params=["sqlite", "mongodb"])
def store_spec(request, tmp_path, monkeypatch):
    # Identity and runner keys in this test's folder (a MongoDB store keeps its identity in PRISMN_HOME).
    monkeypatch.setenv("PRISMN_HOME", str(tmp_path))
    if request.param == "sqlite":
        return f"sqlite:{tmp_path}/prismn.sqlite3"
    return f"{request.getfixturevalue('nx_server')}/prismn_restart_{uuid.uuid4().hex[:12]}"


def expected_text(model: str) -> str:
    (text,) = references(model, [Request(0, PROMPTS[0], None, False)], MAX_TOKENS).values()
    return text


def test_a_coordinator_killed_mid_deployment_takes_it_up_again_on_restart(tiny_model, tmp_path, store_spec):
    model = str(tiny_model)
    expected = expected_text(model)
    swarm = start_headless(tmp_path / "logs", store_spec, model, RUNNERS, runner_vram_gb(model, "fp32"),
                           coordinator_extra=RESTARTED)
    try:
        planned = PLANNED.match(swarm.coordinator.wait_line("planned ", 120)).group(1)
        first = planned.split(", ")[0].split()[0]
        swarm.coordinator.wait_line(f"  {first}: pending", 30)      # stored, its stages on their way
        swarm.coordinator.kill()
        caller = restart_and_call(swarm, store_spec, model, lambda: swarm.coordinator.restart())
    finally:
        swarm.close()
    assert_refused_clearly_then_answered(caller, expected)


def test_a_coordinator_killed_mid_migration_takes_up_the_stored_deployment(tiny_model, tmp_path, store_spec):
    """Killed while a migration (the re-placement's) loads its new stages beside the running ones: the
    store still holds the running deployment (a pending one is stored only at the switch), and the
    restarted headless coordinator serves that one again with its runners."""
    model = str(tiny_model)
    expected = expected_text(model)
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    migrating = Process(["-m", "tests.engine.coordinator.migrating_coordinator", store_spec, model,
                         "paris,frankfurt", "stockholm,madrid"], log_dir / "coordinator.log",
                        {"PYTHONFAULTHANDLER": "1"})
    swarm = HeadlessSwarm(migrating, "", log_dir / "ticket")
    try:
        ticket = migrating.wait_line("ticket: ", 60).split(": ", 1)[1]
        swarm.runners = start_runners(log_dir, ticket, RUNNERS, runner_vram_gb(model, "fp32"))
        running_id = migrating.wait_line("deployed ", 120).split()[1]
        migrating.wait_line("migrating ", 60)
        migrating.kill()
        port = free_port()
        swarm.url = f"http://127.0.0.1:{port}/v1"

        def restart() -> None:
            swarm.coordinator = Process(coordinator_args(store_spec, port, model, len(RUNNERS), RESTARTED),
                                        log_dir / "coordinator.log")

        caller = restart_and_call(swarm, store_spec, model, restart)
        assert caller.deployment_id == running_id
    finally:
        swarm.close()
    assert_refused_clearly_then_answered(caller, expected)


def restart_and_call(swarm: HeadlessSwarm, store_spec: str, model: str, restart) -> Caller:
    """With the coordinator just killed: a client starts calling; one runner of the stored deployment
    is held stopped; the coordinator is restarted, restores the deployment, and the client gets its
    503; the runner is let go, the same deployment is ready again with every runner back."""
    with open_store(store_spec) as store:
        stored = store.current_deployment()
    stages = [s.peer_id for s in stored.to_plan().stages]
    slow = swarm.runners[stages[-1]]
    os.kill(slow.pid, signal.SIGSTOP)
    caller = Caller(swarm.url, model, time.monotonic() + 150)
    try:
        poll(lambda: caller.refused, 30, "the client to find no coordinator")
        restarted_s = time.monotonic()
        restart()
        restored = swarm.coordinator.wait_line("restored deployment ", 60)
        assert restored.startswith(f"restored deployment {stored.deployment_id} from the store")
        poll(caller.seen_503, 30, "a 503 while a runner of the deployment is away")
    finally:
        os.kill(slow.pid, signal.SIGCONT)
    deployed = swarm.coordinator.wait_line("deployed ", 90)
    # taken up again, not re-planned
    assert deployed.startswith(f"deployed {stored.deployment_id} on {len(stages)} runner(s)")
    caller.deployment_id = stored.deployment_id
    caller.thread.join(90)
    peers = poll(lambda: [line for _, line in swarm.coordinator.lines_since(restarted_s)
                              if line.startswith("peers: ") and line.count(" live ") + line.count(" ready ")
                              == len(RUNNERS)], 30, "every runner back")
    assert "dead" not in peers[-1]                           # 0 peers lost
    return caller


def assert_refused_clearly_then_answered(caller: Caller, expected: str) -> None:
    gap = [a for a in caller.answers if a.status_code != 200]
    assert gap and all(a.status_code == 503 for a in gap), [(a.status_code, a.text[:200]) for a in gap]
    for answer in gap:
        error = answer.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["type"] == "server_error"
        assert error["code"] == "deployment_not_ready" and "retry" in error["message"]
        assert int(answer.headers["retry-after"]) >= 1
    assert caller.answers[-1].status_code == 200
    assert caller.answers[-1].json()["choices"][0]["text"] == expected
