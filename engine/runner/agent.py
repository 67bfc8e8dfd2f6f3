"""The runner's join mode: `python -m engine.runner --ticket T --lat .. --lon ..` (or this module).

The agent dials the coordinator named in the ticket, joins (proving the join secret and its own key,
after the coordinator proved the ticket's key: engine.protocol.auth), beats once per
`heartbeat_s` with fresh NVML metrics, loads the stage it is told to (reporting progress and then
its own measured step times), and reconnects by itself whenever the coordinator goes away (three
missing pings or a dropped connection). A stage it holds survives reconnects: it tells the
coordinator in its next join, so a restarted coordinator need not reload anything.

Steps travel the plan's tour: the agent listens on its own node (address in its join) with the same
`RunnerServer` as `python -m engine generate`'s runners (the one routing code path, its compute
queue batching concurrent sessions, its token picker on the last stage). A step enters stage 1 from
the ingress (over this coordinator connection), goes runner to runner, and the last stage sends the
token back to the ingress. The deploy message assigns the only addresses it may send to (the later
stages and the ingress, which it reaches over its coordinator connection) and the pipeline's access
token: stages present it to the next stage and serve only channels that present it.
"""

from __future__ import annotations

import os

# Before torch loads OpenMP (as engine.runner's CLI does): an idle stage must not spin on the cores
# a co-located stage is computing on.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import asyncio
import contextlib
import logging
import math
import re
import secrets
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

from engine import GB
from engine.errors import InvalidInput, PrismnError
from engine.protocol.auth import NotTheCoordinator, SigningKey, runner_handshake, runner_key_path
from engine.protocol.messages import (
    COORDINATOR_TO_RUNNER,
    FRAME_LIMITS,
    MISSED_BEATS,
    PEER_ID_PATTERN,
    PROTOCOL_VERSION,
    STAGE_FIELDS,
    validate,
)
from engine.protocol.ticket import MAX_TICKET_CHARS, Ticket, decode_ticket
from engine.runner.device_metrics import read_metrics
from engine.runner.energy import CPU_WATTS_PER_CORE, EnergyMeter
from engine.runner.server import RunnerServer, error_header
from engine.transport.base import Channel, ConnectionClosed, Node
from engine.transport.frames import FrameError
from engine.transport.tcp_channel import TcpNode, parse_host_port, tcp_connect
from engine.transport.wan import DEFAULT_BANDWIDTH_MBPS, WanEmulation
from engine.validate import printable_text

log = logging.getLogger("prismn.agent")

WELCOME_TIMEOUT_S = 10.0
RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 5.0
PROGRESS_EVERY_S = 0.2
RTT_PINGS = 5
SILENCE_TICK_S = 0.25           # how often the coordinator's silence is checked
CONNECT_TIMEOUT_S = 5.0          # a coordinator that is down: try again soon rather than wait long


class Refused(PrismnError):
    """The coordinator refused this runner (wrong secret, unsupported protocol): retrying won't help."""


@dataclass(frozen=True)
class AgentConfig:
    ticket: Ticket
    peer_id: str
    name: str
    lat: float
    lon: float
    vram_gb: float | None = None          # pretend free VRAM (demos, tests); None: NVML / host memory
    carbon_g_per_kwh: float | None = None
    tflops: float | None = None
    dtype: str = "fp32"
    device: str | None = None
    exit_with_pid: int | None = None      # a local runner ends with the app that spawned it
    emulate_wan: bool = False             # delay sent frames as the WAN from (lat, lon) would
    wan_bandwidth_mbps: float = DEFAULT_BANDWIDTH_MBPS
    bind: str | None = None               # where to listen for the previous stage (TCP); None: auto
    keep_key: bool = False                # keep the runner key on disk (a fixed --id)


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        # Owns this peer id at the coordinator; kept on disk for a fixed --id (rejoins after a restart).
        self.key = (SigningKey.load_or_create(runner_key_path(config.peer_id)) if config.keep_key
                    else SigningKey.generate())
        self.executor: Any = None                     # engine.runner.stage.StageExecutor
        self.loaded: dict[str, Any] | None = None     # the deploy message of the stage held
        self.loaded_bytes = 0
        self.channel: Channel | None = None
        self.server: RunnerServer | None = None       # serves the stage to the previous hop
        self._ingress: str | None = None              # the address the coordinator named as reply_to
        self._load_generation = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wan = WanEmulation((config.lat, config.lon), config.wan_bandwidth_mbps) if config.emulate_wan else None
        self._energy = EnergyMeter(config.device)       # no torch import here: the parent watch starts first

    # ---- connection lifecycle -------------------------------------------------------------

    async def run(self) -> None:
        """Serve until cancelled; raises Refused when the coordinator refuses this runner."""
        node = await _dialer(self.config.ticket.address)
        listener = node or await TcpNode.start(*_tcp_bind(self.config), limits=FRAME_LIMITS)
        self.server = RunnerServer(None, listener, restrict_routes=True, wan=self._wan, energy=self._energy)
        self._spawn(self.server.serve_forever())
        self._spawn(asyncio.to_thread(_preload))        # so the first deploy starts loading at once
        if self.config.exit_with_pid is not None:
            self._spawn(_watch_parent(self.config.exit_with_pid, asyncio.current_task()))
        delay_s = RECONNECT_MIN_S
        try:
            while True:
                try:
                    channel = await (node.connect(self.config.ticket.address, CONNECT_TIMEOUT_S) if node
                                     else tcp_connect(self.config.ticket.address, FRAME_LIMITS))
                except (ConnectionClosed, OSError) as exc:
                    log.info("coordinator unreachable (%s); retrying in %.1f s", exc, delay_s)
                    await asyncio.sleep(delay_s)
                    delay_s = min(delay_s * 2, RECONNECT_MAX_S)
                    continue
                try:
                    await self._session(channel)
                    delay_s = RECONNECT_MIN_S
                except (ConnectionClosed, TimeoutError, InvalidInput) as exc:   # FrameError included
                    log.info("connection to the coordinator ended: %s", exc)
                except NotTheCoordinator as exc:      # an impostor must not stop us: try again later
                    log.warning("%s; retrying", exc)
                finally:
                    self.channel = None
                    try:
                        await asyncio.wait_for(channel.close(), 1.0)
                    except Exception:
                        pass
                await asyncio.sleep(delay_s)
        finally:
            for task in self._tasks:
                task.cancel()
            await self.server.close()

    async def _session(self, channel: Channel) -> None:
        join = await asyncio.to_thread(self._join_message)
        msg = await runner_handshake(channel, self.config.ticket, self.key, join, WELCOME_TIMEOUT_S)
        if msg["type"] == "refused":
            raise Refused(f"the coordinator refused this runner: {msg['reason']}")
        heartbeat_s = msg["heartbeat_s"]
        log.info("joined as %s (heartbeat %.2f s)", msg["peer_id"], heartbeat_s)
        self.channel = channel
        if self._ingress is not None:
            self.server.pin(self._ingress, channel)      # a stage kept across a reconnect replies here
        beats = asyncio.create_task(self._heartbeats(channel, heartbeat_s))
        try:
            silence_s = MISSED_BEATS * heartbeat_s + 1.0    # the coordinator pings every heartbeat_s
            async with contextlib.aclosing(_words(channel, silence_s)) as words:
                async for header, payload in words:
                    try:
                        msg = validate(header, payload, COORDINATOR_TO_RUNNER - {"challenge", "welcome", "refused"})
                    except InvalidInput as exc:
                        log.warning("bad message from the coordinator: %s", exc)
                        continue
                    self._dispatch(channel, msg, payload)
        finally:
            beats.cancel()

    def _dispatch(self, channel: Channel, msg: dict[str, Any], payload: bytes) -> None:
        kind = msg["type"]
        if kind == "forward":
            self._spawn(self._forward(channel, msg, payload))
        elif kind == "deploy":
            self._take_routes(channel, msg)
            self._spawn(self._load(msg))
        elif kind == "routes":
            self._take_routes(channel, msg)
        elif kind == "end_session":
            if self.executor is not None:
                self.executor.end_session(msg["session_id"])
        elif kind == "ping" and "request_id" in msg:
            self._spawn(self._send({"type": "pong", "request_id": msg["request_id"]}))
        elif kind == "pong":
            self.server.on_pong(msg)
        elif kind == "release":
            # A re-placement moved this stage elsewhere: give the memory back (a newer load wins).
            if self.loaded is not None and self.loaded.get("deployment_id") == msg["deployment_id"]:
                self._load_generation += 1
                self.executor, self.loaded, self.loaded_bytes = None, None, 0
                self.server.set_executor(None)
        elif kind == "error":
            log.warning("the coordinator reports: %s", msg["reason"])

    def _take_routes(self, channel: Channel, msg: dict[str, Any]) -> None:
        """The only places this stage sends to: the later stages and the ingress (reached over this
        coordinator connection, the one that assigned them)."""
        if "reply_to" not in msg:
            return
        hops = [*msg.get("routes", []), msg["reply_to"]]
        self._ingress = msg["reply_to"]["address"]
        self.server.pin(self._ingress, channel)
        self.server.allow_routes([h["address"] for h in hops], msg.get("token"),
                                 {h["address"]: (h["lat"], h["lon"]) for h in hops})

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- what the runner reports ----------------------------------------------------------

    def _metrics(self) -> dict[str, Any]:
        metrics = read_metrics(vram_gb_override=self.config.vram_gb)
        free_vram_gb = metrics.free_vram_gb
        power_w = metrics.power_w
        if metrics.gpu is None and power_w is None:
            # the CPU stage's power by the same per-core model its energy is measured with
            import torch

            power_w = torch.get_num_threads() * CPU_WATTS_PER_CORE
        if self.config.vram_gb is None:
            # The stage held now is given back before the next one loads: it counts as free.
            free_vram_gb += self.loaded_bytes / GB
        return {"gpu": metrics.gpu or "CPU", "total_vram_gb": max(metrics.total_vram_gb, free_vram_gb),
                "free_vram_gb": free_vram_gb, "utilization_pct": metrics.utilization_pct,
                "power_w": power_w}

    def _join_message(self) -> dict[str, Any]:
        cfg = self.config
        return {"type": "join", "protocol": PROTOCOL_VERSION, "peer_id": cfg.peer_id,
                "name": cfg.name, "lat": cfg.lat, "lon": cfg.lon, "carbon_g_per_kwh": cfg.carbon_g_per_kwh,
                "tflops": cfg.tflops, "loaded": self.loaded, "address": self.server.node.address,
                "emulated_wan": cfg.emulate_wan, "wan_bandwidth_mbps": cfg.wan_bandwidth_mbps if cfg.emulate_wan
                else None, "energy_method": self._energy.method, **self._metrics()}

    async def _heartbeats(self, channel: Channel, heartbeat_s: float) -> None:
        """One beat every `heartbeat_s` on a fixed cadence (no drift): the coordinator declares a
        runner dead three intervals after its last beat, so late beats would look like deaths."""
        loop = asyncio.get_running_loop()
        due_s = loop.time()
        while True:
            due_s += heartbeat_s
            metrics = await asyncio.to_thread(self._metrics)        # read ahead of the due time
            await asyncio.sleep(max(0.0, due_s - loop.time()))
            await channel.send({"type": "heartbeat", **metrics})

    async def _send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        """To the coordinator we are connected to now, if any (a load may outlive a connection)."""
        channel = self.channel
        if channel is None:
            return
        try:
            await channel.send(header, payload)
        except (ConnectionClosed, OSError):
            pass

    # ---- stages ---------------------------------------------------------------------------

    async def _load(self, msg: dict[str, Any]) -> None:
        self._load_generation += 1
        generation = self._load_generation
        stage = {k: msg[k] for k in STAGE_FIELDS}
        deployment_id = msg["deployment_id"]
        if self.loaded is not None and {**self.loaded, "deployment_id": deployment_id} == stage:
            self.loaded = stage                       # same weights, new deployment: nothing to load
            # no timing: the coordinator's figure for this stage (refined by generations) stands
            await self._send({"type": "ready", "deployment_id": deployment_id})
            self._spawn(self._measure_rtt(deployment_id, msg))
            return
        self.executor, self.loaded, self.loaded_bytes = None, None, 0     # give the memory back first
        self.server.set_executor(None)
        loop = asyncio.get_running_loop()
        last_report = [0.0]

        def progress(done_bytes: int, total_bytes: int) -> None:       # called from the loading thread
            now = time.monotonic()
            if done_bytes < total_bytes and now - last_report[0] < PROGRESS_EVERY_S:
                return
            last_report[0] = now
            report = {"type": "load_progress", "deployment_id": deployment_id,
                      "loaded_bytes": done_bytes, "total_bytes": total_bytes}
            asyncio.run_coroutine_threadsafe(self._send(report), loop)

        try:
            # All of it in a thread, imports included: the loop must keep beating meanwhile.
            executor = await asyncio.to_thread(_load_executor, msg, self.config, progress)
            timing = await asyncio.to_thread(_time_stage, executor)
        except Exception as exc:
            log.exception("loading layers %s:%s failed", msg["layer_start"], msg["layer_end"])
            if generation == self._load_generation:
                await self._send({"type": "load_failed", "deployment_id": deployment_id,
                                  "error": f"{type(exc).__name__}: {exc}"[:1900]})
            return
        if generation != self._load_generation:
            return                                     # a newer deploy arrived meanwhile
        self.executor = executor
        self.server.set_executor(executor)
        self.loaded = stage
        from engine.runner.quantize import module_weight_bytes  # quantised tensors: their real bytes

        self.loaded_bytes = module_weight_bytes(executor.stage)
        log.info("stage ready: layers %s:%s of %s (%.2f ms per decode step)", msg["layer_start"],
                 msg["layer_end"], msg["model"], timing["decode_ms"])
        await self._send({"type": "ready", "deployment_id": deployment_id, **timing})
        self._spawn(self._measure_rtt(deployment_id, msg))

    async def _measure_rtt(self, deployment_id: str, msg: dict[str, Any]) -> None:
        """Round trips to the next stage and to the ingress, over the very links steps take."""
        routes, reply_to = msg.get("routes") or [], msg.get("reply_to")
        if reply_to is None:
            return
        next_hop = routes[0]["address"] if routes else None
        next_ms = await self._min_rtt_ms(next_hop) if next_hop else None
        ingress_ms = await self._min_rtt_ms(reply_to["address"])
        await self._send({"type": "measured_rtt", "deployment_id": deployment_id, "next_hop_rtt_ms": next_ms,
                          "ingress_rtt_ms": ingress_ms})

    async def _min_rtt_ms(self, address: str) -> float | None:
        """The least of RTT_PINGS round trips: the path's own latency, without a busy moment's queueing."""
        times = [ms for ms in [await self.server.measure_rtt_ms(address) for _ in range(RTT_PINGS)] if ms is not None]
        return min(times) if times else None

    async def _forward(self, channel: Channel, msg: dict[str, Any], payload: bytes) -> None:
        """Stage 1 of the tour: the step came from the ingress; the server sends it on (or answers)."""
        try:
            await self.server.handlers["forward"](channel, msg, payload)
        except Exception as exc:               # as RunnerServer.serve_channel answers its own channels
            if not isinstance(exc, PrismnError):
                log.exception("forward failed")
            try:
                await channel.send(error_header(exc, msg))
            except (ConnectionClosed, FrameError, OSError):
                pass


async def _words(channel: Channel, silence_s: float):
    """The coordinator's frames; ConnectionClosed after `silence_s` without one.

    Silence is counted on this loop's clock less its own stalls: while a stage loads, the loading
    thread can hold the interpreter for seconds, and the pings that came meanwhile wait unread in the
    socket; a runner must not leave a coordinator that kept talking (the coordinator's monitor allows
    for its own stalls the same way)."""
    loop = asyncio.get_running_loop()
    recv = asyncio.ensure_future(channel.recv())
    last_word_s, allowance_s = loop.time(), 0.0
    try:
        while True:
            due_s = loop.time() + SILENCE_TICK_S
            done, _ = await asyncio.wait({recv}, timeout=SILENCE_TICK_S)
            allowance_s = max(loop.time() - due_s, allowance_s - SILENCE_TICK_S, 0.0)
            if not done:
                if loop.time() - last_word_s > silence_s + allowance_s:
                    raise ConnectionClosed(f"no word from the coordinator for {silence_s:g} s")
                continue
            last_word_s = loop.time()
            try:
                frame = recv.result()
            except FrameError as exc:
                if not exc.recoverable:
                    raise
                log.warning("bad frame from the coordinator: %s", exc)
                frame = None
            recv = asyncio.ensure_future(channel.recv())
            if frame is not None:
                yield frame
    finally:
        recv.cancel()


async def _watch_parent(pid: int, main: asyncio.Task[Any] | None) -> None:
    """Cancel the agent once process `pid` is gone (killed apps run no clean-up of their own)."""
    # A child is re-parented the moment its parent dies, even while the parent is an unreaped zombie.
    is_parent = os.getppid() == pid
    while True:
        await asyncio.sleep(1.0)
        if is_parent:
            gone = os.getppid() != pid
        else:
            try:
                os.kill(pid, 0)
                gone = False
            except ProcessLookupError:
                gone = True
            except PermissionError:
                gone = False                            # exists, owned by someone else
        if gone:
            log.info("process %d is gone: stopping", pid)
            if main is not None:
                main.cancel()
            return


def _time_stage(executor: Any) -> dict[str, Any]:
    from engine.runner.calibrate import time_stage

    return time_stage(executor)


def _tcp_bind(config: AgentConfig) -> tuple[str, str | None]:
    """(bind, advertised address): loopback for a loopback coordinator, else every interface,
    advertised under the local address that routes to the coordinator's host."""
    if config.bind:
        return config.bind, None
    host, port = parse_host_port(config.ticket.address)
    if host in ("127.0.0.1", "localhost", "::1"):
        return "127.0.0.1:0", None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((host, port))                     # UDP: picks a route, sends nothing
        local_ip = probe.getsockname()[0]
    free = socket.socket()
    free.bind(("0.0.0.0", 0))
    chosen = free.getsockname()[1]
    free.close()
    return f"0.0.0.0:{chosen}", f"{local_ip}:{chosen}"


def _preload() -> None:
    import engine.runner.shards  # noqa: F401 - imports transformers' model classes
    import engine.runner.stage  # noqa: F401


def _load_executor(msg: dict[str, Any], config: AgentConfig, progress: Any) -> Any:
    """Resolve the model source, load this stage's layers only, and wrap them in a StageExecutor."""
    from engine.model.source import resolve_model
    from engine.runner.shards import load_stage
    from engine.runner.stage import StageExecutor

    source = resolve_model(msg["model"])
    num_layers = int(source.config()["num_hidden_layers"])
    if msg["embeddings"] != (msg["layer_start"] == 0) or msg["lm_head"] != (msg["layer_end"] == num_layers):
        raise InvalidInput("deploy.layers", f"{msg['layer_start']}:{msg['layer_end']}",
                           f"embeddings/lm_head flags do not match a {num_layers}-layer model")
    # The plan's quantisation decides how weights are held (and so the compute dtype); --dtype only
    # applies to a deploy message without one.
    quant = msg.get("quant")
    dtype = None if quant else config.dtype
    module = load_stage(source.folder, msg["layer_start"], msg["layer_end"], dtype, config.device, progress,
                        quant=quant)
    return StageExecutor(module)


async def _dialer(address: str) -> Node | None:
    """An iroh endpoint to dial an iroh ticket from; None for a TCP host:port (dialled directly)."""
    try:
        parse_host_port(address)
        return None
    except InvalidInput:
        from engine.transport.iroh_channel import IrohNode

        return await IrohNode.start("0.0.0.0:0", limits=FRAME_LIMITS)


# ---- command line -----------------------------------------------------------------------------

def default_peer_id(name: str) -> str:
    """A readable id that stays fixed for this process, so reconnects keep the same peer."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", name or socket.gethostname()).strip("-.")[:40] or "runner"
    return f"{base}-{secrets.token_hex(3)}"


def parse_args(argv: list[str] | None) -> AgentConfig:
    parser = argparse.ArgumentParser(prog="python -m engine.runner --ticket",
                                     description="Join a Prismn coordinator and serve a pipeline stage.")
    tickets = parser.add_mutually_exclusive_group()
    tickets.add_argument("--ticket", help="the ticket the coordinator printed (other local users can read a "
                                          "command line: prefer --ticket-file or $PRISMN_TICKET)")
    tickets.add_argument("--ticket-file", help="a file holding the ticket (keep it owner-only)")
    parser.add_argument("--lat", type=float, required=True, help="latitude of this machine (-90..90)")
    parser.add_argument("--lon", type=float, required=True, help="longitude of this machine (-180..180)")
    parser.add_argument("--vram-gb", type=float, default=None, help="report this much free VRAM (demos)")
    parser.add_argument("--carbon", type=float, default=None, help="grid carbon intensity here, gCO2/kWh")
    parser.add_argument("--tflops", type=float, default=None, help="dense bf16 TFLOPS of this GPU")
    parser.add_argument("--name", default="", help="a display name (a city)")
    parser.add_argument("--id", dest="peer_id", default=None, help="peer id (default: name + random suffix)")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    parser.add_argument("--exit-with-pid", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--emulate-wan", action="store_true",
                        help="delay each sent frame as the WAN from --lat/--lon to the receiver would (local demos)")
    parser.add_argument("--wan-bandwidth-mbps", type=float, default=DEFAULT_BANDWIDTH_MBPS,
                        help="emulated WAN bandwidth in Mbit/s")
    parser.add_argument("--bind", default=None, help="TCP host:port the previous stage dials (default: auto)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for field, value, low, high in (("--lat", args.lat, -90, 90), ("--lon", args.lon, -180, 180),
                                    ("--vram-gb", args.vram_gb, 0, 1e6), ("--carbon", args.carbon, 0, 5000),
                                    ("--tflops", args.tflops, 0, 1e5),
                                    ("--wan-bandwidth-mbps", args.wan_bandwidth_mbps, 1e-3, 1e7)):
        if value is not None and not (math.isfinite(value) and low <= value <= high):
            raise InvalidInput(field, value, f"expected a finite number in {low}..{high}")
    peer_id = args.peer_id or default_peer_id(args.name)
    if not PEER_ID_PATTERN.match(peer_id):
        raise InvalidInput("--id", peer_id, "expected 1-64 of A-Z a-z 0-9 . _ : - (starting alnum)")
    printable_text(args.name, "--name", max_chars=64)
    return AgentConfig(ticket=decode_ticket(read_ticket(args.ticket, args.ticket_file)), peer_id=peer_id, name=args.name or peer_id,
                       lat=args.lat, lon=args.lon, vram_gb=args.vram_gb, carbon_g_per_kwh=args.carbon,
                       tflops=args.tflops, dtype=args.dtype, device=args.device, exit_with_pid=args.exit_with_pid,
                       emulate_wan=args.emulate_wan, wan_bandwidth_mbps=args.wan_bandwidth_mbps, bind=args.bind,
                       keep_key=args.peer_id is not None)


TICKET_ENV = "PRISMN_TICKET"


def read_ticket(text: str | None, path: str | None) -> str:
    """The ticket from --ticket, else --ticket-file (read with a bound), else $PRISMN_TICKET."""
    if text is not None:
        return text
    if path is not None:
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_TICKET_CHARS + 1)
        except OSError as exc:
            raise InvalidInput("--ticket-file", path, f"cannot read it ({exc.strerror})") from None
        if len(data) > MAX_TICKET_CHARS:
            raise InvalidInput("--ticket-file", path, f"longer than a ticket ({MAX_TICKET_CHARS} chars)")
        return data.decode("utf-8", errors="replace")
    if os.environ.get(TICKET_ENV):
        return os.environ[TICKET_ENV]
    raise InvalidInput("--ticket", None, f"give --ticket, --ticket-file or ${TICKET_ENV}")


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_args(argv)
    except InvalidInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"runner {config.peer_id} joining (pid {os.getpid()})", flush=True)
    try:
        asyncio.run(Agent(config).run())
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
