"""The ingress's handle on a runner process: its stderr is read as it comes, so a chatty runner never
blocks on a full pipe, and a runner that dies says why."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine.errors import PrismnError
from engine.generate import RunnerProcess, _read_ready

pytestmark = pytest.mark.timeout(60)


def child(script: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_a_runner_that_logs_more_than_a_pipe_holds_still_gets_ready() -> None:
    # 1 MiB of progress lines before the ready line: 16 times what an unread pipe buffers.
    runner = RunnerProcess((0, 2), child(
        "import sys, json\n"
        "for i in range(16384): sys.stderr.write(json.dumps({'loading': i}).ljust(63) + '\\n')\n"
        "sys.stderr.flush()\n"
        "print(json.dumps({'ready': True, 'address': 'x'}), flush=True)\n"
        "import time; time.sleep(60)\n"))
    try:
        assert _read_ready(runner, timeout_s=30)["address"] == "x"
    finally:
        runner.stop()
    assert runner.process.returncode is not None
    assert '"loading": 16383' in runner.stderr_tail[-1]


def test_a_runner_that_dies_before_ready_reports_its_last_words() -> None:
    runner = RunnerProcess((2, 4), child(
        "import sys\n"
        "for i in range(5000): print('noise', i, file=sys.stderr)\n"
        "print('CUDA out of memory on stage 2:4', file=sys.stderr)\n"
        "sys.exit(1)\n"))
    try:
        with pytest.raises(PrismnError) as caught:
            _read_ready(runner, timeout_s=30)
    finally:
        runner.stop()
    assert "layers 2:4 did not become ready" in str(caught.value)
    assert "CUDA out of memory on stage 2:4" in str(caught.value)
