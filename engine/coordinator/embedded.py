"""The coordinator inside the desktop app: its own asyncio loop on a background thread.

Every method is safe to call from any thread (the GUI's Tk thread). Long operations return
`concurrent.futures.Future`s; callbacks (`on_progress`, `on_token`) run on the coordinator thread,
so a Tk GUI hands them to its own thread with `widget.after(0, ...)`.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from engine.coordinator import local_runners, server
from engine.coordinator.deployment import ProgressCallback
from engine.coordinator.registry import DEAD
from engine.decoding import GREEDY, Sampling
from engine.errors import InvalidInput, PrismnError
from engine.plan import Plan
from engine.planning.types import Ingress
from engine.swarm import Swarm

log = logging.getLogger("prismn.coordinator")

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class NotRunning(PrismnError):
    """The embedded coordinator was used before `start()` or after `stop()`."""


class EmbeddedCoordinator:
    def __init__(self, store_spec: str | None = None, *, transport: str = "iroh", bind_host: str = "0.0.0.0",
                 heartbeat_s: float = 1.0, model_source: str | None = None, api_bind: str | None = None) -> None:
        """`api_bind`: HOST:PORT to serve the OpenAI-compatible API on (None: no API; a taken port
        falls back to any free one, shown by `api_url`)."""
        self.store_spec = store_spec
        # what runners load a plan's model from (a folder, a .gguf); None: the plan's model name
        self.model_source = model_source
        self.transport = transport
        self.bind_host = bind_host
        self.heartbeat_s = heartbeat_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._running: server.Running | None = None
        self.api_bind = api_bind
        self._api: Any = None                   # engine.api.server.ApiServer once started
        self._processes: list[subprocess.Popen[bytes]] = []

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start serving (returns once the ticket is known); raises what the start raised."""
        if self._thread is not None:
            return
        started: concurrent.futures.Future[server.Running] = concurrent.futures.Future()
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)

            async def boot() -> None:
                try:
                    running = await server.start(self.store_spec, transport=self.transport,
                                                 bind_host=self.bind_host, heartbeat_s=self.heartbeat_s)
                    if self.api_bind is not None:
                        from engine.api.server import start_api

                        try:
                            self._api = await start_api(running.orchestrator, self.api_bind, any_port_if_taken=True)
                        except BaseException:
                            await running.close()
                            raise
                    started.set_result(running)
                except BaseException as exc:        # handed to the caller of start()
                    started.set_exception(exc)

            loop.create_task(boot())
            loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="prismn-coordinator", daemon=True)
        self._thread.start()
        try:
            self._running = started.result(START_TIMEOUT_S)
        except BaseException:
            self._stop_loop()
            raise

    def stop(self) -> None:
        """Stop the local runners this object started, then the coordinator. Idempotent."""
        self._end_local_runners()
        if self._running is not None and self._loop is not None:
            running, self._running = self._running, None
            api, self._api = self._api, None
            try:
                if api is not None:
                    asyncio.run_coroutine_threadsafe(api.close(), self._loop).result(STOP_TIMEOUT_S)
                asyncio.run_coroutine_threadsafe(running.close(), self._loop).result(STOP_TIMEOUT_S)
                asyncio.run_coroutine_threadsafe(_cancel_the_rest(), self._loop).result(STOP_TIMEOUT_S)
            except Exception:
                log.exception("stopping the coordinator")
        self._stop_loop()

    def _end_local_runners(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        for process in self._processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self._processes = []

    def _stop_loop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(STOP_TIMEOUT_S)
        self._loop, self._thread = None, None

    def __enter__(self) -> EmbeddedCoordinator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- state ----------------------------------------------------------------------------

    @property
    def ticket(self) -> str:
        return self._require().ticket

    @property
    def api_url(self) -> str | None:
        """http://HOST:PORT/v1 of the OpenAI-compatible API, None without one."""
        return self._api.url if self._api is not None else None

    @property
    def api_key(self) -> str | None:
        """The bearer key the API requires (None on loopback)."""
        return self._api.api_key if self._api is not None else None

    def live_peers(self) -> list[dict[str, Any]]:
        """id, name, lat, lon, gpu, free_vram_gb, utilization, carbon_g_per_kwh, status (live/loading/ready)."""
        return [row for row in self._require().coordinator.peer_rows if row["status"] != DEAD]

    def all_peers(self) -> list[dict[str, Any]]:
        """Like live_peers, with the dead ones too (status "dead")."""
        return list(self._require().coordinator.peer_rows)

    def swarm(self, ingress: Ingress, model: str | None = None) -> Swarm:
        """The live peers (carbon resolved by location) as the swarm the planner takes, with what
        they measured running `model` (its footprint name) and their round trips to `ingress`."""
        peers = self._call(_live_peer_values, self._require(), model, ingress).result(STOP_TIMEOUT_S)
        return Swarm(ingress=ingress, peers=peers)

    def frame_counts(self) -> dict[str, Any]:
        """Frames the coordinator sent / received by type, and how many carried hidden states."""
        async def snapshot(running: server.Running) -> dict[str, Any]:
            return running.coordinator.frames.snapshot()

        return self._call(snapshot, self._require()).result(STOP_TIMEOUT_S)

    def deployment_status(self) -> dict[str, Any] | None:
        """The current deployment: id, plan, per-stage status and load fraction; None when none."""
        dep = self._require().coordinator.deployment
        if dep is None:
            return None
        return {"id": dep.id, "plan": dep.plan, "model": dep.model, "ready": dep.ready,
                "status": dict(dep.status), "fraction": dict(dep.fraction)}

    # ---- actions --------------------------------------------------------------------------

    def start_local_runners(self, n: int, model: str = "smollm2",
                            cities: list[str] | None = None) -> list[str]:
        """Spawn `n` runner processes here, at demo-swarm cities; returns their peer ids."""
        processes = local_runners.spawn(self.ticket, n, model, cities)
        if not self._processes:
            atexit.register(self._end_local_runners)      # never leave runners behind the app
        self._processes.extend(processes)
        return [process.args[process.args.index("--id") + 1] for process in processes]

    def deploy(self, plan: Plan, on_progress: ProgressCallback | None = None, model: str | None = None,
               ) -> concurrent.futures.Future[Any]:
        """Load `plan` onto its runners; `on_progress(peer_id, fraction, status)` per stage update.

        The future's result is the deployment id. A runner lost while loading triggers a re-plan.
        """
        if not isinstance(plan, Plan):
            raise InvalidInput("plan", type(plan).__name__, "expected an engine.plan.Plan")
        running = self._require()

        async def deploy() -> str:
            return (await running.orchestrator.deploy(plan, model or self.model_source, on_progress)).id

        return self._call(deploy)

    def generate(self, prompt: str | list[int], max_new_tokens: int = 64,
                 on_token: Callable[[str], None] | None = None, chat: bool = True,
                 sampling: Sampling = GREEDY, stop: tuple[str, ...] = ()) -> concurrent.futures.Future[dict[str, Any]]:
        """Generation through the deployed pipeline (greedy unless `sampling` says otherwise); result:
        text, token_ids, tokens_per_s, g_co2, ... (Orchestrator.generate).

        `prompt` is text (through the chat template where the model has one and `chat` is on) or
        token ids."""
        running = self._require()
        return self._call(running.orchestrator.generate, prompt, max_new_tokens, on_token, chat, sampling, stop)

    # ---- re-placement (engine.coordinator.replacement) --------------------------------------

    def enable_replacement(self, **options: Any) -> None:
        """Re-evaluate the deployment on a schedule and when peers join or leave; options as
        Replacement's (period_s, horizon_h, threshold, mode "auto"/"ask", signal, resolver, on_change)."""
        running = self._require()

        async def enable() -> None:
            from engine.coordinator.replacement import Replacement
            if running.replacement is not None:
                await running.replacement.stop()
            running.replacement = Replacement(running.coordinator, running.orchestrator, **options)
            running.replacement.start()

        self._call(enable).result(STOP_TIMEOUT_S)

    def check_replacement(self) -> concurrent.futures.Future[Any]:
        """One check now (fresh intensities); the future's result is the MigrationDecision or None."""
        return self._call(self._replacement().check)

    def accept_migration(self) -> concurrent.futures.Future[Any]:
        """Carry out the waiting proposal ("ask" mode); the result is the MigrationRecord or None."""
        return self._call(self._replacement().accept)

    def replacement_snapshot(self) -> dict[str, Any] | None:
        replacement = self._require().replacement
        return None if replacement is None else replacement.snapshot()

    def _replacement(self) -> Any:
        replacement = self._require().replacement
        if replacement is None:
            raise InvalidInput("replacement", None, "not enabled: call enable_replacement() first")
        return replacement

    # ---- plumbing -------------------------------------------------------------------------

    def _require(self) -> server.Running:
        if self._running is None or self._loop is None:
            raise NotRunning("the embedded coordinator is not running: call start()")
        return self._running

    def _call(self, function: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        self._require()
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(function(*args), self._loop)


async def _cancel_the_rest() -> None:
    """Channels' lingering closes and the like: end them before the loop stops."""
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _live_peer_values(running: server.Running, model: str | None, ingress: Ingress) -> tuple:
    return tuple(running.coordinator.peers_for(model, ingress))
