"""`python main.py` without a display says so plainly and exits 1 (no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys

from engine.paths import REPO_ROOT


def test_without_a_display_the_app_exits_with_a_one_line_reason():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run([sys.executable, "main.py"], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert "cannot start the window" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_the_swarm_option():
    result = subprocess.run([sys.executable, "main.py", "--help"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0
    assert "--swarm" in result.stdout
