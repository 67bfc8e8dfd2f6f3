"""A headless swarm on loopback, started exactly as a user starts one; shared by benchmarks and tests.

    python -m engine.coordinator --transport tcp --bind-host 127.0.0.1 --store STORE
        --api-bind 127.0.0.1:PORT --model M --min-peers N
    python -m engine.runner --ticket-file F --lat .. --lon .. --vram-gb .. --id NAME      (xN)

Every child's output lines are read on a thread and kept with the time each arrived, so a caller can
wait for a line with a deadline, or time an event (a death, a redeploy) by the line announcing it.
Children are stopped (terminate, then kill) by `close`; each runner ends with this process too
(`--exit-with-pid`), so none outlives a crashed caller.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A child whose output lines are read on a thread (and appended to `log_path` when given)."""

    def __init__(self, args: list[str], log_path: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.log_path = log_path
        self.lines: queue.Queue[str] = queue.Queue()
        self.timed: list[tuple[float, str]] = []          # (time.monotonic() on arrival, line)
        self.seen: list[str] = []
        self._lock = threading.Lock()
        self.popen = self._spawn()

    def _spawn(self) -> subprocess.Popen[str]:
        popen = subprocess.Popen([sys.executable, *self.args], cwd=str(ROOT), env=self.env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        threading.Thread(target=self._read, args=(popen,), daemon=True).start()
        return popen

    def _read(self, popen: subprocess.Popen[str]) -> None:
        log = open(self.log_path, "a") if self.log_path is not None else None
        try:
            for line in popen.stdout:
                line = line.rstrip("\n")
                with self._lock:
                    self.timed.append((time.monotonic(), line))
                self.lines.put(line)
                if log is not None:
                    log.write(line + "\n")
                    log.flush()
        finally:
            if log is not None:
                log.close()

    def wait_line(self, prefix: str, timeout_s: float) -> str:
        """The next line starting with `prefix`; AssertionError after `timeout_s` or when the child exits."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.popen.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no line starting {prefix!r} within {timeout_s} s "
                             f"(exit status {self.popen.poll()}); last lines: {self.seen[-30:]}")

    def lines_since(self, since_s: float) -> list[tuple[float, str]]:
        with self._lock:
            return [(t, line) for t, line in self.timed if t >= since_s]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill(self) -> float:
        """SIGKILL now; returns the moment it was sent."""
        os.kill(self.popen.pid, signal.SIGKILL)
        killed_s = time.monotonic()
        self.popen.wait(10)
        return killed_s

    def restart(self) -> None:
        """The same command again (after it ended)."""
        self.popen = self._spawn()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


@dataclass
class HeadlessSwarm:
    """A headless coordinator with its API, and its runners by peer id."""

    coordinator: Process
    url: str                                       # http://127.0.0.1:PORT/v1
    ticket_file: Path
    runners: dict[str, Process] = field(default_factory=dict)

    def close(self) -> None:
        for process in [*self.runners.values(), self.coordinator]:
            process.stop()


def coordinator_args(store: str, api_port: int, model: str, min_peers: int, extra: tuple[str, ...] = ()) -> list[str]:
    return ["-m", "engine.coordinator", "--transport", "tcp", "--bind-host", "127.0.0.1", "--store", store,
            "--api-bind", f"127.0.0.1:{api_port}", "--model", model, "--min-peers", str(min_peers), *extra]


def start_headless(log_dir: Path, store: str, model: str, runners: dict[str, tuple[float, float]], vram_gb: float,
                   *, coordinator_extra: tuple[str, ...] = (), runner_extra: tuple[str, ...] = (),
                   runner_env: dict[str, str] | None = None, min_peers: int | None = None,
                   start_timeout_s: float = 60.0) -> HeadlessSwarm:
    """The coordinator (its output in log_dir/coordinator.log), then one runner per entry of `runners`
    (id -> lat, lon) with `vram_gb` free; returns once the API listens (not yet deployed: wait for the
    coordinator's "deployed " line)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    coordinator = Process(coordinator_args(store, port, model, min_peers or len(runners), coordinator_extra),
                          log_dir / "coordinator.log")
    try:
        ticket = coordinator.wait_line("ticket: ", start_timeout_s).split(": ", 1)[1]
        url = coordinator.wait_line("api: ", start_timeout_s).split(": ", 1)[1]
    except BaseException:
        coordinator.stop()
        raise
    swarm = HeadlessSwarm(coordinator, url, log_dir / "ticket")
    swarm.runners = start_runners(log_dir, ticket, runners, vram_gb, runner_extra, runner_env)
    return swarm


def start_runners(log_dir: Path, ticket: str, runners: dict[str, tuple[float, float]], vram_gb: float,
                  extra: tuple[str, ...] = (), env: dict[str, str] | None = None) -> dict[str, Process]:
    """One runner per entry of `runners` (id -> lat, lon), joining with `ticket` (kept in an owner-only
    log_dir/ticket, not on the command line), with `vram_gb` free; output in log_dir/ID.log."""
    ticket_file = log_dir / "ticket"
    ticket_file.write_text(ticket)
    ticket_file.chmod(0o600)
    return {peer_id: Process(
        ["-m", "engine.runner", "--ticket-file", str(ticket_file), "--lat", str(lat), "--lon", str(lon),
         "--vram-gb", f"{vram_gb:.9f}", "--id", peer_id, "--exit-with-pid", str(os.getpid()), *extra],
        log_dir / f"{peer_id}.log", env) for peer_id, (lat, lon) in runners.items()}
