"""Three runner processes join a coordinator over iroh on loopback and serve a tiny Llama.

The tests run in file order and share the swarm: join -> deploy + generate -> a runner killed
mid-generation -> coordinator restart on the same store -> the last spare lost (shortfall).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest

from engine.coordinator.embedded import EmbeddedCoordinator
from engine.coordinator.local_runners import runner_vram_gb
from engine.decoding import Sampling
from engine.errors import InfeasiblePlan
from engine.model import footprint, load_spec
from engine.planning.planner import make_plan
from engine.planning.types import Ingress, Policy, Weights
from engine.protocol.ticket import Ticket, decode_ticket
from engine.status import PeerStatus
from engine.store import open_store
from tests.conftest import poll
from tests.engine.coordinator.conftest import greedy_monolithic, spawn_runner

pytestmark = pytest.mark.timeout(240)

PROMPT = "Prismn places models"
MAX_NEW_TOKENS = 48
INGRESS = Ingress(lat=50.11, lon=8.68, name="Frankfurt")
SEEDED = Sampling(temperature=1.0, top_k=40, seed=2026)
CITIES = {"paris": (48.86, 2.35), "madrid": (40.42, -3.70), "warsaw": (52.23, 21.01)}


class Swarm:
    def __init__(self, folder, tmp_path) -> None:
        self.folder = folder
        self.store_spec = f"sqlite:{tmp_path}/store/prismn.sqlite3"
        self.log_dir = tmp_path
        # Everything the coordinator logs goes to a file too, for the secrets check at the end.
        self.log_handler = logging.FileHandler(tmp_path / "coordinator.log")
        self.root_level = logging.getLogger().level
        logging.getLogger().addHandler(self.log_handler)
        logging.getLogger().setLevel(logging.DEBUG)
        self.coordinator = self.start_coordinator()
        self.footprint = footprint(load_spec(str(folder)), "fp32")      # runners load the plan's quant
        self.processes = {peer_id: spawn_runner(self.coordinator.ticket, peer_id, lat, lon,
                                                runner_vram_gb(str(folder), "fp32"), tmp_path)
                          for peer_id, (lat, lon) in CITIES.items()}

    def start_coordinator(self) -> EmbeddedCoordinator:
        coordinator = EmbeddedCoordinator(self.store_spec, transport="iroh", bind_host="127.0.0.1")
        coordinator.start()
        return coordinator

    def plan(self):
        swarm = self.coordinator.swarm(INGRESS)
        return make_plan(self.footprint, swarm.peers, INGRESS, Policy.CARBON, Weights())

    def kill(self, peer_id: str) -> float:
        os.kill(self.processes[peer_id].pid, signal.SIGKILL)
        return time.monotonic()

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
            process.wait(10)
        self.coordinator.stop()
        logging.getLogger().removeHandler(self.log_handler)
        logging.getLogger().setLevel(self.root_level)
        self.log_handler.close()


@pytest.fixture(scope="module")
def swarm(tiny_model, tmp_path_factory):
    swarm = Swarm(tiny_model, tmp_path_factory.mktemp("e2e"))
    yield swarm
    swarm.close()


@pytest.fixture(scope="module")
def reference(tiny_model):
    from transformers import AutoTokenizer

    prompt_ids = AutoTokenizer.from_pretrained(str(tiny_model))(PROMPT)["input_ids"]
    return greedy_monolithic(tiny_model, prompt_ids, MAX_NEW_TOKENS)


def test_three_runners_join_with_location_metrics_and_resolved_carbon(swarm):
    peers = poll(lambda: len(swarm.coordinator.live_peers()) == 3 and swarm.coordinator.live_peers(), 60,
                     "three runners to join")
    by_id = {p["id"]: p for p in peers}
    assert set(by_id) == set(CITIES)
    assert by_id["paris"]["lat"] == pytest.approx(48.86)
    assert by_id["paris"]["free_vram_gb"] == pytest.approx(runner_vram_gb(str(swarm.folder), "fp32"), rel=1e-6)
    assert by_id["warsaw"]["carbon_source"] == "country"        # Poland's grid, by location
    assert by_id["warsaw"]["carbon_g_per_kwh"] > by_id["paris"]["carbon_g_per_kwh"]
    with open_store(swarm.store_spec) as store:
        assert {p.peer_id for p in store.list_peers(status=PeerStatus.LIVE)} == set(CITIES)
        assert store.metrics_history("paris") or poll(lambda: store.metrics_history("paris"), 5, "metrics")


def test_deploy_reports_progress_and_generation_matches_the_monolithic_model(swarm, reference):
    plan = swarm.plan()
    assert plan.feasible and len(plan.stages) == 2          # one runner cannot hold it, any two can
    events = []
    deployment_id = swarm.coordinator.deploy(plan, lambda *e: events.append(e), model=str(swarm.folder)).result(90)
    for stage in plan.stages:
        assert (stage.peer_id, 1.0, "ready") in events
        assert any(e[0] == stage.peer_id and e[2] == "loading" for e in events)
    with open_store(swarm.store_spec) as store:
        record = store.current_deployment()
    assert record.deployment_id == deployment_id
    assert set(record.stage_status.values()) == {"ready"}
    assert record.to_plan().stages == plan.stages

    streamed = []
    result = swarm.coordinator.generate(PROMPT, MAX_NEW_TOKENS, streamed.append).result(60)
    assert result["token_ids"] == reference
    assert "".join(streamed) == result["text"]
    assert result["tokens_per_s"] > 0 and result["recoveries"] == 0
    assert result["g_co2"] == pytest.approx(MAX_NEW_TOKENS * plan.metrics.g_co2_per_1k_tokens / 1000)
    sampled = swarm.coordinator.generate(PROMPT, MAX_NEW_TOKENS, sampling=SEEDED).result(60)
    assert sampled["token_ids"] != reference                    # it really sampled
    assert swarm.coordinator.generate(PROMPT, MAX_NEW_TOKENS, sampling=SEEDED).result(60)["token_ids"] == \
        sampled["token_ids"]
    swarm.sampled_reference = sampled["token_ids"]


def test_a_runner_killed_mid_generation_is_replaced_and_the_output_is_complete_and_identical(swarm, reference):
    """Sampled with a seed: the retry after the failover draws the very same tokens."""
    victim = swarm.coordinator.deployment_status()["plan"].stages[-1].peer_id
    killed_at = []
    dead_after_s = []
    streamed = []

    def on_token(text: str) -> None:
        streamed.append(text)
        if len(streamed) == 8 and not killed_at:
            killed_at.append(swarm.kill(victim))
            threading.Thread(target=watch_death, daemon=True).start()

    def watch_death() -> None:
        poll(lambda: any(p["id"] == victim and p["status"] == "dead"
                             for p in swarm.coordinator.all_peers()), 10, "the death")
        dead_after_s.append(time.monotonic() - killed_at[0])

    result = swarm.coordinator.generate(PROMPT, MAX_NEW_TOKENS, on_token, sampling=SEEDED).result(120)
    assert killed_at, "the generation ended before the runner could be killed"
    assert result["recoveries"] == 1
    assert result["token_ids"] == swarm.sampled_reference
    assert "".join(streamed) == result["text"]                 # nothing repeated, nothing missing
    poll(lambda: dead_after_s, 10, "the death to be timed")
    assert dead_after_s[0] <= 3.3         # 3 missed beats of 1 s after the last one, checked every 0.1 s
    stages = swarm.coordinator.deployment_status()["plan"].stages
    assert victim not in {s.peer_id for s in stages} and len(stages) == 2


def test_a_restarted_coordinator_recovers_peers_and_deployment_and_runners_rejoin(swarm, reference):
    before = swarm.coordinator.deployment_status()
    ticket = swarm.coordinator.ticket
    swarm.coordinator.stop()
    swarm.coordinator = swarm.start_coordinator()
    assert swarm.coordinator.ticket == ticket                 # same endpoint id, port and secret
    assert {p["id"] for p in swarm.coordinator.all_peers()} == set(CITIES)   # from the store
    after = swarm.coordinator.deployment_status()
    assert after["id"] == before["id"] and after["plan"] == before["plan"]
    poll(lambda: swarm.coordinator.deployment_status()["ready"], 30, "the stages to come back")
    result = swarm.coordinator.generate(PROMPT, MAX_NEW_TOKENS).result(60)
    assert result["token_ids"] == reference and result["recoveries"] == 0


def test_a_runner_with_the_wrong_secret_is_refused(swarm, tmp_path):
    good = decode_ticket(swarm.coordinator.ticket)
    forged = Ticket(good.address, "not-the-secret").encode()
    process = spawn_runner(forged, "intruder", 0.0, 0.0, 1.0, tmp_path)
    assert process.wait(60) == 3
    assert "wrong join secret" in (tmp_path / "intruder.log").read_text()
    assert "intruder" not in {p["id"] for p in swarm.coordinator.all_peers()}


def test_when_the_rest_cannot_hold_the_model_the_user_gets_the_shortfall(swarm):
    stages = swarm.coordinator.deployment_status()["plan"].stages
    swarm.kill(stages[0].peer_id)
    with pytest.raises(InfeasiblePlan, match="cannot hold the model: short by"):
        swarm.coordinator.generate(PROMPT, MAX_NEW_TOKENS).result(60)


def test_no_secret_is_logged_or_stored_anywhere_after_the_whole_run(swarm):
    """Logs of the coordinator and every runner, the store (with its WAL), the deployment's model
    file, the peer-key bindings and the runners' keys: none holds the join secret or the ticket.
    Only the coordinator's own identity file keeps the secret (owner-only, it must)."""
    ticket = swarm.coordinator.ticket
    secret = decode_ticket(ticket).secret
    swarm.log_handler.flush()
    checked = []
    for path in sorted(swarm.log_dir.rglob("*")):
        if path.is_file() and path.name != "coordinator_identity.json":
            data = path.read_bytes()
            assert secret.encode() not in data and ticket.encode() not in data, path
            checked.append(path.name)
    assert {"coordinator.log", "paris.log", "prismn.sqlite3", "coordinator_peer_keys.jsonl"} <= set(checked)
    assert any(name.endswith(".key") for name in checked) and "joined: paris" in \
        (swarm.log_dir / "coordinator.log").read_text()
