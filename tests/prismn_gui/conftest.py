"""Shared pieces of the GUI tests: small peers files written to a temp dir; reading the app's state
file (PRISMN_STATE_FILE), driving it with xdotool and taking screenshots of the display."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.paths import REPO_ROOT
from tests.conftest import poll

ARTIFACTS = REPO_ROOT / "artifacts" / "screenshots"


def write_peers(path, peers, ingress=None):
    data = {"ingress": ingress or {"name": "Frankfurt", "lat": 50.11, "lon": 8.68}, "peers": peers}
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def tiny_swarm(tmp_path):
    """Two small peers: far too little VRAM for a 70B model."""
    return write_peers(tmp_path / "tiny.json", [
        {"id": "a", "lat": 48.86, "lon": 2.35, "free_vram_gb": 8.0, "carbon_g_per_kwh": 50, "gpu": "RTX 3070"},
        {"id": "b", "lat": 40.71, "lon": -74.0, "free_vram_gb": 12.0, "carbon_g_per_kwh": 400, "gpu": "RTX 3080"},
    ])


def read_state(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def wait_for_state(path: Path, predicate, timeout_s: float = 45.0, proc=None) -> dict:
    """The app's state once `predicate` holds for it; fails at once if the app process `proc` exits."""
    last: list[dict | None] = [None]

    def matching() -> dict | None:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the app exited with {proc.returncode}")
        last[0] = read_state(path)
        return last[0] if last[0] is not None and predicate(last[0]) else None
    return poll(matching, timeout_s, lambda: f"the app's state to match; last state: {last[0]}")


def first_drawn(state: dict) -> bool:
    return state["update"] >= 1 and state["map_draws"] >= 1


@contextlib.contextmanager
def running_app(display: str, folder: Path, env: dict[str, str] | None = None, *,
                ready: Callable[[dict], bool] = first_drawn, timeout_s: float = 60.0,
                stop_timeout_s: float = 10.0) -> Iterator[dict]:
    """`python main.py` on `display`, its state in folder/state.json and its output in folder/app.log
    (no Electricity Maps token unless `env` gives one). Yields {"proc", "state_file", "env", "display",
    "first"} once `ready(state)` holds; then SIGTERM (a kill after `stop_timeout_s`), and the output's
    tail printed when it holds a traceback."""
    state_file = folder / "state.json"
    env = {**{k: v for k, v in os.environ.items() if k != "ELECTRICITYMAPS_TOKEN"},
           "DISPLAY": display, "PRISMN_STATE_FILE": str(state_file), **(env or {})}
    log_path = folder / "app.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "main.py", "--appearance", "light"], cwd=REPO_ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            first = wait_for_state(state_file, ready, timeout_s=timeout_s, proc=proc)
            yield {"proc": proc, "state_file": state_file, "env": env, "display": display, "first": first}
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            output = log_path.read_text(errors="replace")
            if "Traceback" in output:
                print(output[-4000:])


def click(app, widget: str) -> None:
    """Click the middle of `widget` (a name in the state's "widgets") where the app last said it is."""
    x, y = centre_of(read_state(app["state_file"])["widgets"][widget])
    xdo(app, "mousemove", str(x), str(y), "click", "1")


def xdo(app, *args: str) -> str:
    return subprocess.run(["xdotool", *args], env=app["env"], check=True, capture_output=True,
                          text=True, timeout=10).stdout


def centre_of(box: list[int], fraction_x: float = 0.5) -> tuple[int, int]:
    x, y, width, height = box
    return int(x + width * fraction_x), int(y + height / 2)


def screenshot(app, name: str, shows=lambda pixels: pixels.std() > 20, timeout_s: float = 20.0):
    """Capture the display to ARTIFACTS/name until `shows(pixels)` holds (pixels: 0-255 ints, rows x
    columns x RGB) and return the pixels: a draw still on its way is waited for, not slept through."""
    import matplotlib.image

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    last = [None]

    def captured():
        subprocess.run(["import", "-window", "root", str(path)], env=app["env"], check=True, timeout=30)
        last[0] = (matplotlib.image.imread(path)[..., :3] * 255).astype(int)
        return shows(last[0])
    poll(captured, timeout_s, lambda: f"{name} to show what the test expects (std {last[0].std():.1f})",
         every_s=0.2)
    return last[0]
