"""`pip install .` gives working console scripts that find the shipped data outside a checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.paths import REPO_ROOT

SCRIPTS = ("prismn", "prismn-engine", "prismn-runner", "prismn-coordinator")


@pytest.mark.slow
def test_pip_install_gives_console_scripts_that_plan_outside_the_checkout(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "tests", "benchmarks", "artifacts", "__pycache__", "build", "*.egg-info", ".*cache*"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True, timeout=300)
    for name in SCRIPTS:
        assert (target / "bin" / name).is_file(), name
    shutil.rmtree(source)                       # nothing may be read from the copied checkout
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("PRISMN_ASSETS", None)
    done = subprocess.run([sys.executable, str(target / "bin" / "prismn-engine"), "plan", "--model", "llama-3.1-8b",
                           "--peers", str(target / "share" / "prismn" / "assets" / "swarms" / "demo.json"), "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["feasible"] and plan["model"]["name"] == "llama-3.1-8b"
    where = subprocess.run([sys.executable, "-c", "import engine.paths as p; print(p.ASSETS_DIR)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=60)
    assert Path(where.stdout.strip()) == target / "share" / "prismn" / "assets"
