"""Serve one stage over a transport node: a table of frame handlers around a `StageExecutor`.

Every accepted channel gets its own task; frames on one channel are handled in order, a `forward`
up to its place in the compute queue (its compute and sending on run as a task of their own, so the
steps of many sessions that a previous stage sends on one channel are batched together). Compute runs
on one worker thread behind the compute queue (engine.runner.batching: decode steps of different
sessions waiting together run as one batched forward pass) so the event loop keeps answering pings
and reading other channels meanwhile. A bad frame costs only itself: it is answered with an `error`
frame and the channel keeps serving; a frame that loses the stream position (a length over the
limits, a stream cut inside a frame) closes that one channel. Other channels and sessions go on.

`RunnerServer.handlers` maps frame type -> coroutine(channel, header, payload). The same server is
the routing code of both `python -m engine generate` (runners it starts) and coordinator deployments
(engine.runner.agent embeds one): a forward goes through this stage and on to `route[0]`, the
last stage's token goes to `reply_to`, and only addresses assigned by `allow_routes` are ever dialled.

What a stranger may take is bounded (engine.runner.limits): idle and mid-frame timeouts, a payload
cap from the model's size, sessions bound to the caller that opened them, per-caller session, cache
and frame-rate limits. When the process that started the runner (or the coordinator, for a tour)
assigns an access token with the routes, a channel must first say `hello` {token}; until then it gets
nothing but an error.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import torch

from engine.decoding import pick_token
from engine.errors import InvalidInput, PrismnError
from engine.protocol.stage import ForwardRequest, _short, parse_end_session, parse_forward, trace_json
from engine.runner.energy import EnergyMeter
from engine.runner.limits import RateLimiter, RunnerLimits, SessionOwners, payload_limit
from engine.transport.base import Channel, ConnectionClosed, Node
from engine.transport.frames import FrameError, FrameLimits, frame_to_tensor, tensor_to_frame
from engine.transport.wan import Location, WanEmulation

if TYPE_CHECKING:        # transformers loads in seconds: a coordinator's runner imports it in a thread
    from engine.runner.batching import StepQueue
    from engine.runner.stage import StageExecutor

log = logging.getLogger(__name__)

Handler = Callable[[Channel, dict[str, Any], bytes], Awaitable[None]]
EXPIRE_EVERY_S = 30.0
ROUTES_WAIT_S = 60.0     # how long a forward waits for the allowed routes to be assigned
# Each open channel may hold a frame of up to the payload limit (256 MiB) while it is read: without a
# cap, many idle or slow connections would pin the runner's memory. A pipeline needs a handful.
MAX_CHANNELS = 64
PING_TIMEOUT_S = 5.0
# Forwards of one channel computing at once: a previous stage's whole batch (engine.runner.stage.MAX_BATCH).
MAX_FORWARDS_PER_CHANNEL = 32


class NextHopLost(PrismnError):
    """The address a stage must send to cannot be reached: reported to the ingress at once."""

    def __init__(self, address: str, reason: str) -> None:
        self.address = address
        super().__init__(f"next hop {address[:40]} unreachable: {reason}")


class RunnerServer:
    """Sends only to addresses given to `allow_routes` (the later stages and the ingress), never to
    whatever a frame's `route`/`reply_to` names: until routes are assigned, a result goes back only on
    the channel its request came in on. `restrict_routes` makes frames wait (up to ROUTES_WAIT_S) for
    the assignment (and its access token) instead of being judged at once.

    `executor` may be None until a stage is loaded (a coordinator's runner); forwards are refused
    then. `wan` delays every outgoing frame as a WAN between the places of `allow_routes` would.
    """

    def __init__(self, executor: StageExecutor | None, node: Node, info: dict[str, Any] | None = None,
                 restrict_routes: bool = False, max_channels: int = MAX_CHANNELS,
                 wan: WanEmulation | None = None, energy: EnergyMeter | None = None,
                 limits: RunnerLimits | None = None) -> None:
        self.executor = executor
        self.node = node
        self.info = dict(info or {})
        self.restrict_routes = restrict_routes
        self.max_channels = max_channels
        self.wan = wan
        self.energy = energy or EnergyMeter(str(executor.device) if executor is not None else "cpu")
        self.limits = limits or RunnerLimits()
        self._owners = SessionOwners(self.limits)
        self._token: str | None = None     # with one, a channel must say hello {token} first
        self._open_channels = 0
        self._allowed_routes: frozenset[str] = frozenset()
        self._locations: dict[str, Location] = {}
        self._pinned: dict[str, Channel] = {}       # links someone else reads (the coordinator's)
        self._pongs: dict[int, asyncio.Future[None]] = {}
        self._routes_assigned = asyncio.Event()
        self.handlers: dict[str, Handler] = {
            "hello": self._on_hello,
            "forward": self._on_forward,
            "end_session": self._on_end_session,
            "ping": self._on_ping,
        }
        self._steps: StepQueue | None = None
        self._links: dict[str, Channel] = {}
        self._link_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.frames_refused = 0

    # ---- serving --------------------------------------------------------------------------

    async def serve_forever(self) -> None:
        self._spawn(self._expire_loop())
        while True:
            try:
                channel = await self.node.accept()
            except ConnectionClosed:
                return
            if self._open_channels >= self.max_channels:
                log.warning("refusing a channel from %s: %d already open", channel.peer, self._open_channels)
                self.frames_refused += 1
                await self._send_error(channel, InvalidInput(
                    "channels", self._open_channels + 1, f"this runner serves at most {self.max_channels}"), None)
                await channel.close()
                continue
            self._open_channels += 1          # counted from the accept, before its task first runs
            self._spawn(self._serve_counted(channel))

    async def _serve_counted(self, channel: Channel) -> None:
        try:
            await self.serve_channel(channel)
        finally:
            self._open_channels -= 1

    async def serve_channel(self, channel: Channel) -> None:
        """Read frames until the peer goes, or is silent too long; each goes to its handler, errors
        go back as `error` frames."""
        async def refuse(exc: FrameError) -> None:
            self.frames_refused += 1
            if exc.recoverable:
                await self._send_error(channel, exc, None)
            else:
                log.info("closing channel from %s: %s", channel.peer, exc)

        channel.limits = self.channel_limits
        rate = RateLimiter(self.limits.max_frames_per_s)
        forwards = asyncio.Semaphore(MAX_FORWARDS_PER_CHANNEL)
        try:
            async for header, payload in channel.frames(refuse, first_frame_s=self.limits.first_frame_s,
                                                        idle_s=self.limits.idle_channel_s):
                if not rate.allow():
                    self.frames_refused += 1
                    await self._send_error(channel, InvalidInput(
                        "rate", header["type"], f"over {self.limits.max_frames_per_s:g} frames/s"), header)
                    continue
                if not await self._handle(channel, header, payload, forwards):
                    return
        except ConnectionClosed:
            return
        finally:
            await channel.close()

    async def _handle(self, channel: Channel, header: dict[str, Any], payload: bytes,
                      forwards: asyncio.Semaphore | None = None) -> bool:
        """Run one frame's handler; False when the channel must close (it did not authenticate).

        With `forwards`, a `forward` runs as a task of its own (at most that many at once): the
        previous stage sends every session's step on one channel, and they must reach the compute
        queue together to be batched, not one after another's whole compute.
        """
        handler = self.handlers.get(header["type"])
        if handler is None:
            self.frames_refused += 1
            await self._send_error(channel, InvalidInput(
                "type", header["type"], f"unknown frame type; expected one of {sorted(self.handlers)}"), header)
            return True
        if header["type"] != "hello" and self.restrict_routes and not self._routes_assigned.is_set():
            try:          # the access token comes with the routes: judge the frame once it is known
                await asyncio.wait_for(self._routes_assigned.wait(), ROUTES_WAIT_S)
            except TimeoutError:
                pass
        if header["type"] != "hello" and self._token is not None and not getattr(channel, "authenticated", False):
            self.frames_refused += 1
            await self._send_error(channel, InvalidInput("hello", None, "say hello with this runner's access token "
                                                         "first"), header)
            return False
        if forwards is not None and header["type"] == "forward":
            await forwards.acquire()
            task = asyncio.ensure_future(self._run_handler(handler, channel, header, payload))
            task.add_done_callback(lambda _task: forwards.release())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return True
        return await self._run_handler(handler, channel, header, payload)

    async def _run_handler(self, handler: Handler, channel: Channel, header: dict[str, Any], payload: bytes) -> bool:
        try:
            await handler(channel, header, payload)
        except (InvalidInput, PrismnError) as exc:     # ConnectionClosed too: of a next hop
            self.frames_refused += 1
            await self._send_error(channel, exc, header)
            return not (header["type"] == "hello" and isinstance(exc, InvalidInput))
        except Exception as exc:  # a compute failure must not take the runner down
            log.exception("handler %s failed", header["type"])
            await self._send_error(channel, exc, header)
        return True

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for link in list(self._links.values()):
            await link.close()
        self._links.clear()
        await self.node.close()
        if self._steps is not None:
            self._steps.close()

    def allow_routes(self, addresses: list[str] | tuple[str, ...], token: str | None = None,
                     locations: dict[str, Location] | None = None) -> None:
        """The addresses this runner may send to from now on (replaces the previous set), where each
        one is (for the emulated WAN); with a `token`, channels must present it in a `hello` frame
        before anything else (the stages of one pipeline share it)."""
        if not isinstance(addresses, (list, tuple)):
            raise InvalidInput("routes", _short(addresses), "expected a list of addresses")
        for index, address in enumerate(addresses):
            if not isinstance(address, str) or not address:
                raise InvalidInput(f"routes[{index}]", _short(address), "expected an address string")
        if token is not None and (not isinstance(token, str) or not 16 <= len(token) <= 256):
            raise InvalidInput("token", "...", "expected a string of 16..256 characters")
        self._allowed_routes = frozenset(addresses)
        self._locations = dict(locations or {})
        if token is not None:
            self._token = token
        self._routes_assigned.set()

    def pin(self, address: str, channel: Channel) -> None:
        """Send frames for `address` on `channel`, an open link someone else reads and re-opens
        (a coordinator's runner reaches its ingress over its own coordinator connection)."""
        self._pinned[address] = channel

    def set_executor(self, executor: StageExecutor | None) -> None:
        if self._steps is not None and self._steps.executor is not executor:
            self._steps.close()
            self._steps = None
        self.executor = executor

    @property
    def steps(self) -> StepQueue:
        """The stage's compute queue (engine.runner.batching), made for the executor loaded now."""
        if self.executor is None:
            raise InvalidInput("forward", None, "no stage loaded")
        if self._steps is None or self._steps.executor is not self.executor:
            from engine.runner.batching import StepQueue
            if self._steps is not None:
                self._steps.close()
            self._steps = StepQueue(self.executor)
        return self._steps

    @property
    def channel_limits(self) -> FrameLimits:
        """Reading limits: the payload cap follows the loaded stage's size (a whole context of hidden
        states); without a stage, the transport's cap."""
        executor = self.executor
        if executor is None:
            return self.limits.frame_limits(payload_limit(131_072, 16_384))
        max_positions = int(getattr(executor.config, "max_position_embeddings", 0) or 0) or 131_072
        return self.limits.frame_limits(payload_limit(max_positions, executor.hidden_size))

    async def _check_routes(self, route: tuple[str, ...], reply_to: str | None) -> None:
        """Refuse, before any compute, a frame naming an address this runner was not assigned:
        otherwise anyone who can reach a runner could have it ship hidden states anywhere."""
        if not route and reply_to is None:
            return
        if not self._routes_assigned.is_set() and not self.restrict_routes:
            raise InvalidInput("route", list(route) or reply_to, "no routes were assigned to this runner "
                               "(a stand-alone runner answers only on the request's own channel)")
        if not self._routes_assigned.is_set():     # once set, no await: a channel's forwards keep their order
            try:
                await asyncio.wait_for(self._routes_assigned.wait(), ROUTES_WAIT_S)
            except TimeoutError:
                raise InvalidInput("route", list(route), "no routes were assigned to this runner yet") from None
        named = [(f"route[{i}]", address) for i, address in enumerate(route)] + [("reply_to", reply_to)]
        for field, address in named:
            if address is not None and address not in self._allowed_routes:
                raise InvalidInput(field, _short(address), "not an address assigned to this runner's pipeline")

    # ---- handlers -------------------------------------------------------------------------

    async def _on_hello(self, channel: Channel, header: dict[str, Any], payload: bytes) -> None:
        token = header.get("token")
        if self._token is None and self.restrict_routes:
            try:          # the token comes with the routes, which may arrive just after the first frame
                await asyncio.wait_for(self._routes_assigned.wait(), ROUTES_WAIT_S)
            except TimeoutError:
                pass
        if self._token is not None:
            if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self._token.encode()):
                raise InvalidInput("token", "...", "not this runner's access token")
            channel.authenticated = True  # type: ignore[attr-defined]
        await channel.send({"type": "hello", "ok": True})

    async def _on_ping(self, channel: Channel, header: dict[str, Any], payload: bytes) -> None:
        reply: dict[str, Any] = {"type": "pong", "request_id": header.get("request_id")}
        if getattr(channel, "authenticated", False):    # what runs here is for its pipeline only
            sessions = len(self.executor.sessions()) if self.executor is not None else 0
            reply.update(info=self.info, sessions=sessions, frames_refused=self.frames_refused)
        await channel.send(reply)

    async def _on_end_session(self, channel: Channel, header: dict[str, Any], payload: bytes) -> None:
        session_id, route, reply_to = parse_end_session(header)
        await self._check_routes(route, reply_to)
        self._owners.check_end(channel.peer, session_id, set(self.executor.sessions()))
        ended = self.executor.end_session(session_id)
        self._owners.forget(session_id)
        if route:
            try:
                await self._send_to(route[0], {"type": "end_session", "session_id": session_id,
                                               "route": list(route[1:]), "reply_to": reply_to})
            except PrismnError as exc:            # the ingress waits for an answer: tell it
                if reply_to is not None:
                    await self._send_error_to(reply_to, exc, header)
                raise
            return
        reply = {"type": "session_ended", "session_id": session_id, "ended": ended}
        await self._deliver(channel, reply_to, reply, b"")

    async def _on_forward(self, channel: Channel, header: dict[str, Any], payload: bytes) -> None:
        request = parse_forward(header)
        await self._check_routes(request.route, request.reply_to)
        inputs = frame_to_tensor(header, payload)
        executor = self.executor
        if executor is None:
            raise InvalidInput("forward", request.request_id, "no stage loaded")
        length = int(inputs.shape[1]) if inputs.dim() >= 2 else 0
        self._owners.check(channel.peer, request.session_id, request.position, length,
                           set(executor.sessions()))
        if request.route and executor.last:
            raise InvalidInput("route", list(request.route), "the last stage cannot forward further")
        if request.want == "hidden" and executor.last:
            raise InvalidInput("want", "hidden", "the last stage returns logits or a token")
        try:
            output, step = await self._compute_step(executor, request, inputs)
            self._owners.record(channel.peer, request.session_id, request.position + length)
            if request.route:
                out_header, out_payload = tensor_to_frame("forward", output, **request.header_for_next(step))
                await self._send_to(request.route[0], out_header, out_payload)
                return
        except Exception as exc:
            # Whoever waits for the result (the ingress) must hear about it, not only the sender: a
            # failed step, or a next stage that is gone (the sender is a runner that only logs it).
            if request.reply_to is not None:
                await self._send_error_to(request.reply_to, exc, header)
            raise
        out_header, out_payload = tensor_to_frame("result", output, request_id=request.request_id,
                                                  session_id=request.session_id, position=request.position,
                                                  trace=trace_json(request.trace, step))
        await self._deliver(channel, request.reply_to, out_header, out_payload)

    async def _compute_step(self, executor: StageExecutor, request: ForwardRequest,
                            inputs: torch.Tensor) -> tuple[torch.Tensor, tuple[float, float]]:
        """The stage's output through the compute queue (batched with other sessions' steps) and what
        it cost: (compute ms, joules by `self.energy.method`). The last stage picks the token here
        with engine.decoding.pick_token, the one token picker."""
        from engine.runner.stage import Step
        last_only = executor.last and not request.all_positions

        def finish(output: torch.Tensor) -> torch.Tensor:        # on the compute thread
            if not executor.last:
                return output
            if request.want == "token":
                token = pick_token(output[0, -1], request.sampling, request.position + inputs.shape[1])
                return torch.tensor([[token]], dtype=torch.int64)
            return output.float().cpu()

        started = self.energy.start()
        output = await self.steps.submit(Step(request.session_id, request.position, inputs), last_only, finish)
        return output, self.energy.stop(started)

    # ---- sending --------------------------------------------------------------------------

    async def _deliver(self, channel: Channel, reply_to: str | None, header: dict[str, Any],
                       payload: bytes) -> None:
        if reply_to is None:
            await channel.send(header, payload)
        else:
            await self._send_to(reply_to, header, payload)

    async def _send_to(self, address: str, header: dict[str, Any], payload: bytes = b"") -> None:
        """Send on the cached link to `address`, reconnecting once if it broke since last use;
        NextHopLost when it cannot be reached. Delayed first by the emulated WAN, if any."""
        if self.wan is not None:
            await asyncio.sleep(self.wan.delay_s(self._locations.get(address), len(payload) + 256))
        for attempt in (1, 2):
            try:
                link = await self._link(address)
                await link.send(header, payload)
                return
            except ConnectionClosed as exc:
                self._links.pop(address, None)
                if attempt == 2 or address in self._pinned:
                    raise NextHopLost(address, exc.reason) from None

    async def measure_rtt_ms(self, address: str) -> float | None:
        """Round trip of a ping to an assigned `address` (emulated WAN both ways included); None
        when it does not answer in PING_TIMEOUT_S."""
        request_id = secrets.randbits(52)
        pong: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pongs[request_id] = pong
        started_s = time.perf_counter()
        try:
            await self._send_to(address, {"type": "ping", "request_id": request_id})
            await asyncio.wait_for(pong, PING_TIMEOUT_S)
            if self.wan is not None:        # the answer travels the emulated way back too
                await asyncio.sleep(self.wan.delay_s(self._locations.get(address), 256))
            return (time.perf_counter() - started_s) * 1000.0
        except (TimeoutError, PrismnError):
            return None
        finally:
            self._pongs.pop(request_id, None)

    def on_pong(self, header: dict[str, Any]) -> None:
        pong = self._pongs.get(header.get("request_id"))
        if pong is not None and not pong.done():
            pong.set_result(None)

    async def _link(self, address: str) -> Channel:
        pinned = self._pinned.get(address)
        if pinned is not None:
            if pinned.closed:
                raise ConnectionClosed(f"the link to {address[:40]} is closed")
            return pinned
        async with self._link_lock:
            link = self._links.get(address)
            if link is None or link.closed:
                link = await self.node.connect(address)
                if self._token is not None:     # the stages of one pipeline share its access token
                    await link.send({"type": "hello", "token": self._token})
                self._links[address] = link
                self._spawn(self._drain_link(address, link))
            return link

    async def _drain_link(self, address: str, link: Channel) -> None:
        """Read what the next hop sends back on our link (only errors, in the pipeline) and log it."""
        try:
            async for header, _ in link.frames():
                if header.get("type") == "error":
                    log.warning("next hop %s refused a frame: %s", address, header.get("reason"))
                elif header.get("type") == "pong":
                    self.on_pong(header)
        finally:
            if self._links.get(address) is link:
                self._links.pop(address, None)

    async def _send_error(self, channel: Channel, exc: Exception, header: dict[str, Any] | None) -> None:
        try:
            await channel.send(error_header(exc, header))
        except (ConnectionClosed, FrameError):
            pass

    async def _send_error_to(self, address: str, exc: Exception, header: dict[str, Any] | None) -> None:
        try:
            await self._send_to(address, error_header(exc, header))
        except PrismnError as send_exc:              # ConnectionClosed, FrameError, InvalidInput
            log.warning("could not report an error to %s: %s", address, send_exc)

    # ---- housekeeping ---------------------------------------------------------------------

    async def _expire_loop(self) -> None:
        while True:
            executor = self.executor
            await asyncio.sleep(min(EXPIRE_EVERY_S, max(0.05, executor.idle_timeout_s / 2))
                                if executor is not None else EXPIRE_EVERY_S)
            expired = self.executor.expire_idle() if self.executor is not None else []
            if expired:
                log.info("freed %d idle session(s)", len(expired))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def error_header(exc: Exception, header: dict[str, Any] | None) -> dict[str, Any]:
    """An `error` frame naming the field when the error knows it; echoes the request's ids; names the
    address that could not be reached when a next hop is lost.

    Only our own errors are quoted: another exception's text (a C++ backtrace from torch, with
    library paths and addresses) stays in this runner's log; the caller learns what failed.
    """
    if isinstance(exc, PrismnError):
        reason = str(exc)[:2000]
    else:
        kind = header.get("type") if header else None
        reason = f"{type(exc).__name__} while handling {kind or 'a frame'} (details in the runner's log)"
    out: dict[str, Any] = {"type": "error", "reason": reason, "field": getattr(exc, "field", None),
                           "error": type(exc).__name__}
    if isinstance(exc, NextHopLost):
        out["unreachable"] = exc.address
    if header:
        for key in ("request_id", "session_id", "type"):
            if key in header:
                out["for_" + key if key == "type" else key] = header[key]
    return out


async def open_node(kind: str, bind: str = "127.0.0.1:0") -> Node:
    """A listening transport node: "tcp" (host:port) or "iroh" (QUIC, dialable by endpoint address)."""
    if kind == "tcp":
        from engine.transport.tcp_channel import TcpNode

        return await TcpNode.start(bind)
    if kind == "iroh":
        from engine.transport.iroh_channel import IrohNode

        return await IrohNode.start(bind)
    raise InvalidInput("listen", kind, "expected 'tcp' or 'iroh'")


def stage_info(executor: StageExecutor, model: str, dtype: str, extra: dict[str, Any]) -> dict[str, Any]:
    layout = executor.stage.layout
    return {"model": model, "layers": [layout.layer_start, layout.layer_end], "embeddings": layout.first,
            "lm_head": layout.last, "dtype": dtype, "device": str(executor.device),
            "started_at": time.time(), **extra}
