"""The whole demo in the real window under Xvfb: start the coordinator, start three local SmolLM2
runners, plan over the live peers, Deploy, ask a question, read the answer.

Everything goes through the mouse and keyboard (xdotool) and the app's state file; the app's store
and ticket live in a temp PRISMN_HOME (only the converted-model cache is shared, so a run does not
redo the one-time GGUF conversion). The answer is checked against the whole model's greedy answer.
Skipped only when Xvfb is missing outside CI.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest

from engine.paths import user_data_dir
from tests.conftest import poll
from tests.prismn_gui.conftest import (
    click,
    first_drawn,
    read_state,
    running_app,
    screenshot,
    wait_for_state,
    xdo,
)

pytestmark = [pytest.mark.gui, pytest.mark.timeout(300)]
PROMPT = "What is the capital of France?"


def _runner_pids(app_pid: int, peer_id: str | None = None) -> list[int]:
    """Runner processes spawned for this app (they carry --exit-with-pid <app pid>), or just the
    one with `peer_id`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--exit-with-pid" in args and str(app_pid).encode() in args \
                and (peer_id is None or peer_id.encode() in args):
            pids.append(int(entry.name))
    return pids


@pytest.fixture
def live_app(display, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shared_models = user_data_dir() / "models"
    shared_models.mkdir(parents=True, exist_ok=True)
    (home / "models").symlink_to(shared_models, target_is_directory=True)

    def ready(state: dict) -> bool:
        return first_drawn(state) and "panel_start_coordinator" in state["widgets"]
    with running_app(display, tmp_path, {"PRISMN_HOME": str(home)}, ready=ready, stop_timeout_s=30) as app:
        app_pid = app["proc"].pid
        yield app
    # The app stopped its runners as it closed; any still there after a grace period failed that.
    runners = _runner_pids(app_pid)
    with contextlib.suppress(pytest.fail.Exception):
        poll(lambda: not any(Path(f"/proc/{pid}").exists() for pid in runners), 15, "the runners to end")
    left = [pid for pid in runners if Path(f"/proc/{pid}").exists()]
    for pid in left:          # never leave them behind, even when the assertion below fails
        os.kill(pid, signal.SIGKILL)
    assert not left, f"runner processes {left} outlived the app"


def test_start_runners_deploy_live_and_ask_a_question(live_app):
    app, proc = live_app, live_app["proc"]
    state_file = app["state_file"]
    first = read_state(state_file)
    assert first["live_available"] is False and first["live"] is False

    click(app, "panel_start_coordinator")
    wait_for_state(state_file, lambda s: s["deploy"]["coordinator_running"] and s["live_available"], proc=proc)

    click(app, "panel_start_local_runners")     # three by default; they serve SmolLM2
    assert "emulated WAN" in wait_for_state(state_file, lambda s: "emulated WAN" in s["deploy"]["hint"],
                                            proc=proc)["deploy"]["hint"]
    joined = wait_for_state(
        state_file, lambda s: len([r for r in s["deploy"]["runners"] if r["status"] == "live"]) == 3,
        timeout_s=60, proc=proc)
    if not joined["live"]:          # the app switches to the live peers itself; a person might not wait
        click(app, "live_radio")
    # Local runners serve SmolLM2, so the window plans SmolLM2 over the three live peers.
    live = wait_for_state(
        state_file,
        lambda s: s["live"] and s["peer_count"] == 3 and s["model"] == "smollm2-135m" and s["carbon"]["feasible"]
        and s["deploy"]["map"]["status_rings"] == 3, proc=proc)
    stages = live["carbon"]["stage_peers"]
    assert len(stages) >= 2, "local runners each hold only part of the model"
    assert set(stages) <= {r["id"] for r in live["deploy"]["runners"]}

    click(app, "panel_deploy")
    ready = wait_for_state(
        state_file,
        lambda s: s["deploy"]["stages"] and all(v == "ready" for v in s["deploy"]["stages"].values())
        and "Deployed" in s["deploy"]["hint"],
        timeout_s=120, proc=proc)
    assert set(ready["deploy"]["stages"]) == set(stages)
    assert ready["deploy"]["map_stages"] == ready["deploy"]["stages"]
    assert ready["deploy"]["map"]["ready_legs"] == len(stages) + 1      # the whole tour, drawn solid
    assert "emulated WAN" in ready["deploy"]["hint"]                       # still said once deployed
    screenshot(app, "live_deploy_ready.png")

    click(app, "panel_prompt")
    xdo(app, "type", "--delay", "20", PROMPT)
    click(app, "panel_generate")
    answered = wait_for_state(state_file, lambda s: s["deploy"]["generation"] is not None, timeout_s=90,
                              proc=proc)
    generation = answered["deploy"]["generation"]
    assert "Paris" in generation["text"]
    assert generation["tokens"] > 0 and generation["tokens_per_s"] > 0
    assert "tokens/s" in answered["deploy"]["stats"] and "gCO2" in answered["deploy"]["stats"]
    assert answered["deploy"]["output"] == generation["text"]
    measured = wait_for_state(state_file, lambda s: "carbon" in s["measured"], timeout_s=10, proc=proc)
    ttft, ms_per_token, tokens_per_s, grams = measured["measured"]["carbon"]
    assert float(ttft) > 0 and "→" in ms_per_token and float(tokens_per_s) > 0
    assert grams.endswith("*")              # CPU runners: energy from the CPU-time model, marked estimated
    assert measured["deploy"]["chart_points"] == generation["tokens"]
    screenshot(app, "live_deploy_answer.png")

    # Both plans, one after the other, measured on the same prompt: both rows filled.
    click(app, "panel_deploy_both")
    done = measured["deploy"]["generations"]
    both = wait_for_state(state_file, lambda s: s["deploy"]["generations"] == done + 2
                          and {"vram", "carbon"} <= set(s["measured"]), timeout_s=150, proc=proc)
    assert all(float(row[2]) > 0 for row in both["measured"].values())
    screenshot(app, "live_both_measured.png")

    # The runner that holds no stage dies: the window re-plans over the two left and rings it red.
    spare = next(r["id"] for r in answered["deploy"]["runners"] if r["id"] not in stages)
    (spare_pid,) = _runner_pids(proc.pid, spare)
    os.kill(spare_pid, signal.SIGKILL)
    replanned = wait_for_state(
        state_file, lambda s: s["peer_count"] == 2 and spare not in {r["id"] for r in s["deploy"]["runners"]},
        timeout_s=30, proc=proc)
    assert replanned["live"] and replanned["carbon"]["feasible"]
    rings = wait_for_state(state_file, lambda s: s["deploy"]["map"]["ring_statuses"].get(spare) == "dead",
                           timeout_s=5, proc=proc)["deploy"]["map"]["ring_statuses"]
    assert len(rings) == 3 and all(rings[peer_id] != "dead" for peer_id in stages)
    screenshot(app, "live_runner_lost.png")

    # The pipeline's answer is the whole model's greedy answer to the same chat-formatted prompt.
    from engine.generate import load_tokenizer, prompt_ids
    from engine.model.source import resolve_model
    from tests.engine.coordinator.conftest import greedy_monolithic

    folder = resolve_model("smollm2-135m").folder
    tokenizer = load_tokenizer(folder)
    # The app deploys at the quantisation selected in the window: its default, bf16.
    reference = greedy_monolithic(folder, prompt_ids(tokenizer, PROMPT, chat=True), generation["tokens"], "bf16")
    assert tokenizer.decode(reference, skip_special_tokens=True) == generation["text"]
