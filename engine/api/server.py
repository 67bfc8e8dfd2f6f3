"""Bind the API beside the coordinator: uvicorn on the coordinator's own asyncio loop.

Requests only await the orchestrator (network steps, no heavy compute on the loop), so heartbeats keep
their cadence. "Loopback" is 127.0.0.0/8, ::1 and the name localhost; any other bind address
(0.0.0.0 included) needs a bearer key: PRISMN_API_KEY, else one generated here and shown like the
ticket. CORS stays closed (no Access-Control headers): browsers on other origins cannot call it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import secrets
import socket
from dataclasses import dataclass

import uvicorn

from engine.api.app import MAX_IN_FLIGHT, READY_WAIT_S, create_app
from engine.coordinator.orchestrator import Orchestrator
from engine.errors import InvalidInput

KEY_ENV = "PRISMN_API_KEY"
START_TIMEOUT_S = 10.0


def parse_bind(text: str) -> tuple[str, int]:
    """'127.0.0.1:8000', '[::1]:8000', 'localhost:0' -> (host, port)."""
    host, sep, port = str(text).rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidInput("api_bind", text, "expected HOST:PORT (port 0..65535)")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_key_for(host: str, env: dict[str, str] | None = None) -> tuple[str | None, bool]:
    """(key or None, generated?): none on loopback, PRISMN_API_KEY or a fresh one elsewhere."""
    if is_loopback(host):
        return None, False
    given = (os.environ if env is None else env).get(KEY_ENV, "")
    if given:
        if len(given) < 16:
            raise InvalidInput(KEY_ENV, "<hidden>", "expected at least 16 characters")
        return given, False
    return secrets.token_urlsafe(24), True


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):           # the coordinator's process owns Ctrl-C, not the API
        yield


@dataclass
class ApiServer:
    url: str                             # http://HOST:PORT/v1
    api_key: str | None
    key_generated: bool
    _server: _Server
    _task: asyncio.Task[None]

    async def close(self) -> None:
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), 5.0)
        except (TimeoutError, asyncio.CancelledError):
            self._task.cancel()


async def start_api(orchestrator: Orchestrator, bind: str, max_in_flight: int = MAX_IN_FLIGHT,
                    api_key: str | None = None, any_port_if_taken: bool = False,
                    ready_wait_s: float = READY_WAIT_S) -> ApiServer:
    """Serve on `bind` (HOST:PORT, port 0 = any free one) from the running loop; returns once listening.

    `any_port_if_taken`: when PORT is busy, take any free port instead of failing (the app's default
    address is a convenience; the headless command fails on a taken port, as asked)."""
    host, port = parse_bind(bind)
    key, generated = (api_key, False) if api_key is not None else api_key_for(host)
    config = uvicorn.Config(create_app(orchestrator, key, max_in_flight, ready_wait_s), host=host, port=port,
                            log_level="warning", lifespan="off", access_log=False, server_header=False)
    server = _Server(config)
    # Bound here, not by uvicorn: uvicorn answers a bind error with sys.exit, which would end the coordinator.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family)
    except OSError as exc:
        if not (any_port_if_taken and port):
            raise InvalidInput("api_bind", bind, f"cannot listen there: {exc}") from None
        sock = socket.create_server((host, 0), family=family)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    while not server.started:
        if task.done():
            task.result()                  # raises the bind error
            raise InvalidInput("api_bind", bind, "the API server stopped while starting")
        if loop.time() > deadline:
            task.cancel()
            raise InvalidInput("api_bind", bind, f"not listening within {START_TIMEOUT_S:g} s")
        await asyncio.sleep(0.02)
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return ApiServer(f"http://{shown}:{bound_port}/v1", key, generated, server, task)
