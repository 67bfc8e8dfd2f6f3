"""Deployments follow the plan's tour: per token the coordinator sends one frame and receives one,
whatever the number of stages, and no hidden state ever passes through it. Runners send only where
their deploy message told them to.

Four runner processes (tiny Llama, TCP on loopback) join one coordinator; 2-, 3- and 4-stage plans
over them are deployed in turn.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
import torch

from engine.coordinator.embedded import EmbeddedCoordinator
from engine.model import footprint, load_spec
from engine.plan import ModelInfo, Plan, PlanMetrics, Stage
from engine.transport.frames import tensor_to_frame
from engine.transport.tcp_channel import tcp_connect
from tests.conftest import poll
from tests.engine.coordinator.conftest import greedy_monolithic, spawn_runner

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CITIES = {"paris": (48.86, 2.35), "madrid": (40.42, -3.70), "warsaw": (52.23, 21.01), "rome": (41.90, 12.50)}
SPLITS = {2: [(0, 3), (3, 6)], 3: [(0, 2), (2, 4), (4, 6)], 4: [(0, 2), (2, 3), (3, 4), (4, 6)]}
PROMPT_IDS = [5, 17, 99, 3, 42]
NEW_TOKENS = 6


@pytest.fixture(scope="module")
def swarm(tiny_model, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("tour")
    coordinator = EmbeddedCoordinator(f"sqlite:{log_dir}/prismn.sqlite3", transport="tcp", bind_host="127.0.0.1")
    coordinator.start()
    processes = [spawn_runner(coordinator.ticket, peer_id, lat, lon, 1.0, log_dir)
                 for peer_id, (lat, lon) in CITIES.items()]
    try:
        poll(lambda: len(coordinator.live_peers()) == len(CITIES), 120, "four runners to join")
        yield coordinator
    finally:
        for process in processes:
            process.kill()
            process.wait(10)
        coordinator.stop()


def plan_over(folder, peers: list[dict], ranges: list[tuple[int, int]]) -> Plan:
    fp = footprint(load_spec(str(folder)))
    stages = tuple(Stage(peer_id=p["id"], layer_start=a, layer_end=b, embeddings=a == 0, lm_head=b == fp.num_layers,
                         vram_required_gb=0.01, vram_free_gb=1.0, carbon_g_per_kwh=p["carbon_g_per_kwh"],
                         carbon_source=p["carbon_source"], lat=p["lat"], lon=p["lon"])
                   for p, (a, b) in zip(peers, ranges, strict=True))
    metrics = PlanMetrics(peers_used=len(stages), tour_km=1.0, avg_carbon_g_per_kwh=1.0, est_ms_per_token=1.0,
                          g_co2_per_1k_tokens=1.0, vram_utilization=0.1)
    return Plan(policy="carbon", weights={"carbon": 0.6, "distance": 0.3, "vram": 0.1},
                model=ModelInfo(fp.name, fp.num_layers, fp.param_count, fp.quant),
                ingress={"lat": 50.11, "lon": 8.68}, feasible=True, stages=stages, metrics=metrics)


@pytest.mark.parametrize("num_stages", [2, 3, 4])
def test_per_token_the_coordinator_sends_one_frame_and_receives_one_and_never_a_hidden_state(
        swarm, tiny_model, num_stages):
    peers = sorted(swarm.live_peers(), key=lambda p: p["id"])[:num_stages]
    plan = plan_over(tiny_model, peers, SPLITS[num_stages])
    swarm.deploy(plan, model=str(tiny_model)).result(120)

    before = swarm.frame_counts()
    result = swarm.generate(PROMPT_IDS, NEW_TOKENS).result(120)
    after = swarm.frame_counts()

    assert result["token_ids"] == greedy_monolithic(tiny_model, PROMPT_IDS, NEW_TOKENS)
    sent = {k: v - before["sent"].get(k, 0) for k, v in after["sent"].items()}
    received = {k: v - before["received"].get(k, 0) for k, v in after["received"].items()}
    assert sent["forward"] == NEW_TOKENS                      # one frame out per token: to stage 1 only
    assert received["result"] == NEW_TOKENS                   # one frame back per token: the last stage's
    assert received.get("error", 0) == 0
    assert after["hidden_state_frames"] == before["hidden_state_frames"] == 0
    measured = result["measured"]
    assert len(measured["stage_compute_ms"]) == num_stages and all(ms > 0 for ms in measured["stage_compute_ms"])
    assert measured["energy_method"] == "cpu-time model (estimated)" and measured["estimated"]


def test_a_runner_refuses_a_step_naming_an_address_its_deploy_did_not_assign(swarm, tiny_model):
    """A stranger without the deployment's access token is refused at once; a caller with it still
    cannot have the stage send to an address its deploy did not assign."""
    peers = sorted(swarm.live_peers(), key=lambda p: p["id"])[:2]
    swarm.deploy(plan_over(tiny_model, peers, SPLITS[2]), model=str(tiny_model)).result(120)
    coordinator = swarm._require().coordinator
    first = coordinator.registry.get(peers[0]["id"]).address
    token = coordinator.deployment.token

    async def detour(hello: str | None) -> dict:
        channel = await tcp_connect(first)
        try:
            if hello is not None:
                await channel.send({"type": "hello", "token": hello})
                reply, _ = await asyncio.wait_for(channel.recv(), 30)
                assert reply["type"] == "hello" and reply["ok"] is True
            header, payload = tensor_to_frame("forward", torch.tensor([PROMPT_IDS]), request_id=7, session_id="d",
                                              position=0, want="token", route=["127.0.0.1:9"], reply_to=None)
            await channel.send(header, payload)
            reply, _ = await asyncio.wait_for(channel.recv(), 30)
            return reply
        finally:
            await channel.close()

    stranger = asyncio.run(detour(None))
    assert stranger["type"] == "error" and stranger["field"] == "hello"
    reply = asyncio.run(detour(token))
    assert reply["type"] == "error" and reply["field"] == "route[0]"
    assert "not an address assigned" in reply["reason"]


def test_a_middle_stage_killed_mid_generation_is_replaced_and_the_output_is_identical(swarm, tiny_model):
    """Stage 1 finds its next hop gone and tells the ingress at once; the request is re-planned over
    the runners left and rerun from its prompt."""
    peers = sorted(swarm.live_peers(), key=lambda p: p["id"])[:3]
    swarm.deploy(plan_over(tiny_model, peers, SPLITS[3]), model=str(tiny_model)).result(120)
    victim = peers[1]["id"]
    pid = next(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
               and victim.encode() in _cmdline(p) and b"engine.runner.agent" in _cmdline(p))
    streamed, killed = [], []

    def on_token(text: str) -> None:
        streamed.append(text)
        if len(streamed) == 3:
            os.kill(pid, signal.SIGKILL)
            killed.append(True)

    tokens = 32
    result = swarm.generate(PROMPT_IDS, tokens, on_token).result(120)
    assert killed, "the generation ended before the runner could be killed"
    assert result["recoveries"] == 1
    assert result["token_ids"] == greedy_monolithic(tiny_model, PROMPT_IDS, tokens)
    assert victim not in {s.peer_id for s in swarm.deployment_status()["plan"].stages}


def _cmdline(entry) -> bytes:
    try:
        return (entry / "cmdline").read_bytes()
    except OSError:
        return b""
