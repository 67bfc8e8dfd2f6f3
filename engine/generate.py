"""`python -m engine generate`: generation through a pipeline of runner processes (engine.decoding's loop).

This process is the ingress: it tokenizes, starts one `python -m engine.runner` per stage, and sends
each step to the first stage with the route of the remaining stages; hidden states go runner to
runner and the last stage sends the next token straight back here (the closed tour ingress -> peers
-> ingress). Prints {"text", "token_ids", "tokens_per_s", "stages": [...], ...}.

Chat template: `--chat` wraps the prompt as one user turn with the tokenizer's chat template and
`add_generation_prompt`; it is ON by default for models that ship a chat template (SmolLM2-Instruct)
and OFF otherwise; `--no-chat` sends the raw prompt. Tests compare against the monolithic model fed
the very same token ids (`prompt_ids` below), so either choice is checked the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from engine.decoding import (
    GREEDY,
    Sampling,
    TextStream,
    check_max_tokens,
    check_stop,
    decode,
    eos_token_ids,
    load_tokenizer,
    prompt_ids,
)
from engine.errors import InvalidInput, PrismnError
from engine.paths import REPO_ROOT
from engine.transport.wan import DEFAULT_BANDWIDTH_MBPS, Location, WanEmulation

READY_TIMEOUT_S = 600.0
STEP_TIMEOUT_S = 300.0
ROUTES_ACK_S = 60.0      # a runner applies new routes in milliseconds; slow only when starved


# ---- runner processes -------------------------------------------------------------------------

STDERR_TAIL_LINES = 200


@dataclass
class RunnerProcess:
    layers: tuple[int, int]
    process: subprocess.Popen
    ready: dict[str, Any] = field(default_factory=dict)
    token: str | None = None         # the access token its pipeline's clients present (open_pipeline)
    # The runner's stderr (loading progress, logs), read as it comes: an unread pipe fills up (64 KiB)
    # and then blocks the runner mid-load or mid-generation. Only the last lines are kept, for errors.
    stderr_tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=STDERR_TAIL_LINES))
    _stderr_reader: threading.Thread | None = None

    def __post_init__(self) -> None:
        if self.process.stderr is not None:
            self._stderr_reader = threading.Thread(target=self._drain_stderr, daemon=True,
                                                   name=f"runner-{self.layers[0]}-{self.layers[1]}-stderr")
            self._stderr_reader.start()

    def _drain_stderr(self) -> None:
        try:
            for line in self.process.stderr:
                self.stderr_tail.append(line)
        except (OSError, ValueError):      # the stream was closed under us by stop()
            pass

    @property
    def address(self) -> str:
        return self.ready["address"]

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._stderr_reader is not None:
            self._stderr_reader.join(timeout_s)     # EOF follows the exit; then the pipe can close
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream:
                stream.close()


def start_runners(model: str, stages: list[tuple[int, int]], transport: str = "iroh", dtype: str | None = "fp32",
                  extra_args: list[str] | None = None, env: dict[str, str] | None = None,
                  ready_timeout_s: float = READY_TIMEOUT_S, restrict_routes: bool = True,
                  quant: str | None = None, locations: list[Location] | None = None,
                  wan_bandwidth_mbps: float | None = None) -> list[RunnerProcess]:
    """Start one runner process per stage (all load at once) and wait for each one's ready line.

    `restrict_routes`: the runners take the addresses they may send to from `assign_routes` (over
    their stdin; `open_pipeline` does it), never any address a frame names; without it, they answer
    only on a request's own channel. With `locations` (one (lat, lon) per stage) each runner sits at
    its place and delays its frames as the WAN between places would (`wan_bandwidth_mbps`)."""
    if locations is not None and len(locations) != len(stages):
        raise InvalidInput("locations", len(locations), f"expected one (lat, lon) per stage ({len(stages)})")
    runners: list[RunnerProcess] = []
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), child_env.get("PYTHONPATH")]))
    try:
        for index, (start, end) in enumerate(stages):
            command = [sys.executable, "-m", "engine.runner", "--model", model, "--layers", f"{start}:{end}",
                       "--listen", transport, *_dtype_args(dtype, quant), *(extra_args or [])]
            if restrict_routes:
                command.append("--routes-from-stdin")
            if locations is not None:
                lat, lon = locations[index]
                command += ["--lat", str(lat), "--lon", str(lon), "--emulate-wan"]
                if wan_bandwidth_mbps is not None:
                    command += ["--wan-bandwidth-mbps", str(wan_bandwidth_mbps)]
            process = subprocess.Popen(command, stdin=subprocess.PIPE if restrict_routes else subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       env=child_env, cwd=str(REPO_ROOT))
            runners.append(RunnerProcess((start, end), process))
        for runner in runners:
            runner.ready = _read_ready(runner, ready_timeout_s)
    except BaseException:
        stop_runners(runners)
        raise
    return runners


def _dtype_args(dtype: str | None, quant: str | None) -> list[str]:
    return [*(["--dtype", dtype] if dtype else []), *(["--quant", quant] if quant else [])]


def _read_ready(runner: RunnerProcess, timeout_s: float) -> dict[str, Any]:
    record = _read_record(runner, "ready", timeout_s)
    if record is None:
        raise PrismnError(f"runner for layers {runner.layers[0]}:{runner.layers[1]} did not become ready: "
                          f"{_stderr_tail(runner)}")
    if record["ready"] is False:
        raise InvalidInput(record.get("field") or "runner", f"{runner.layers[0]}:{runner.layers[1]}",
                           record.get("error", "runner refused to start"))
    return record


def _read_record(runner: RunnerProcess, key: str, timeout_s: float) -> dict[str, Any] | None:
    """The next JSON line the runner prints on stdout that holds `key` (None if none comes in time)."""
    import selectors

    deadline = time.monotonic() + timeout_s
    stdout = runner.process.stdout
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=min(1.0, max(0.0, deadline - time.monotonic()))):
                if runner.process.poll() is not None:
                    break
                continue
            line = stdout.readline()
            if not line:
                break
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and key in record:
                return record
    return None


def _stderr_tail(runner: RunnerProcess) -> str:
    if runner.process.poll() is None:
        runner.process.kill()
        runner.process.wait()
    if runner._stderr_reader is not None:
        runner._stderr_reader.join(10.0)
    return "".join(runner.stderr_tail)[-2000:]


def assign_routes(runners: list[RunnerProcess], addresses: list[str], token: str | None = None,
                  locations: dict[str, Location] | None = None) -> None:
    """Tell runners started with `restrict_routes` the only addresses they may send to: the pipeline's
    stages and the ingress (a frame's `reply_to`), and where each one is (emulated WAN). Each call
    replaces the previous list. With a `token`, the runners serve only channels that present it
    (`PipelineClient.open(token=...)`). Returns once every runner has confirmed (so the next step
    cannot race the assignment)."""
    line = json.dumps({"routes": list(addresses), **({"token": token} if token else {}),
                       "locations": {a: list(p) for a, p in (locations or {}).items()}}) + "\n"
    for runner in runners:
        if runner.process.stdin is None:
            raise InvalidInput("restrict_routes", False, f"runner {runner.layers} was started without it "
                               "(its stdin is closed: it takes no routes)")
        try:
            runner.process.stdin.write(line)
            runner.process.stdin.flush()
        except BrokenPipeError:
            raise PrismnError(f"runner for layers {runner.layers[0]}:{runner.layers[1]} has exited: "
                              f"{_stderr_tail(runner)}") from None
    for runner in runners:
        record = _read_record(runner, "routes_assigned", ROUTES_ACK_S)
        if record is None or record["routes_assigned"] is False:
            raise PrismnError(f"runner for layers {runner.layers[0]}:{runner.layers[1]} did not take the routes: "
                              f"{(record or {}).get('error') or _stderr_tail(runner)}")


def pipeline_token(runners: list[RunnerProcess]) -> str:
    """The access token of a set of runners (made on first use): every client of theirs presents it."""
    token = runners[0].token or secrets.token_hex(16)
    for runner in runners:
        runner.token = token
    return token


def stop_runners(runners: list[RunnerProcess]) -> None:
    for runner in runners:
        runner.stop()


# ---- the ingress side of the pipeline ---------------------------------------------------------


class PipelineClient:
    """Talks to a chain of runners: sends to the first, receives results from the last.

    Replies are routed to their waiter by key (a step's request id, an end_session's session id),
    so concurrent sessions over one client never take each other's replies. Frames nobody waits
    for (late, forged, or for a request that was given up) go to a bounded `unclaimed` queue.
    """

    UNCLAIMED_MAX = 4096

    def __init__(self, node, addresses: list[str], wan: WanEmulation | None = None,
                 first_location: Location | None = None) -> None:
        self.node = node
        self.addresses = list(addresses)
        self.wan = wan                          # emulated WAN from the ingress to the first stage
        self.first_location = first_location
        self._first = None
        self._first_closed = False
        self._waiters: dict[tuple[str, Any], asyncio.Future] = {}
        self.unclaimed: asyncio.Queue[tuple[dict[str, Any], bytes]] = asyncio.Queue(self.UNCLAIMED_MAX)
        self._tasks: set[asyncio.Task] = set()

    @classmethod
    async def open(cls, transport: str, addresses: list[str], token: str | None = None,
                   wan: WanEmulation | None = None, first_location: Location | None = None) -> PipelineClient:
        from engine.runner.server import open_node

        if not addresses:
            raise InvalidInput("stages", [], "expected at least one runner address")
        client = cls(await open_node(transport), addresses, wan, first_location)
        client._first = await client.node.connect(addresses[0])
        if token is not None:                       # the runners' access token (assign_routes)
            await client._first.send({"type": "hello", "token": token})
        client._spawn(client._read_replies(client._first, first=True))
        client._spawn(client._accept_loop())
        return client

    async def forward(self, session_id: str, position: int, inputs: torch.Tensor, want: str = "token",
                      all_positions: bool = False, timeout_s: float = STEP_TIMEOUT_S,
                      sampling: dict[str, Any] | None = None) -> torch.Tensor:
        from engine.transport.frames import frame_to_tensor, tensor_to_frame

        # Unguessable: anyone who can reach this node could otherwise post a `result` for the next id.
        request_id = secrets.randbits(52)
        header, payload = tensor_to_frame(
            "forward", inputs, request_id=request_id, session_id=session_id, position=position, want=want,
            all_positions=all_positions, route=self.addresses[1:], reply_to=self.node.address,
            **({"sampling": sampling} if sampling is not None else {}))
        try:
            reply, reply_payload = await self._request(("request", request_id), header, payload, timeout_s)
        except TimeoutError:
            raise PrismnError(f"no result from the pipeline for session {session_id!r} at position {position} "
                              f"in {timeout_s:g} s") from None
        if reply.get("type") == "error":
            raise InvalidInput(reply.get("field") or "pipeline", reply.get("for_type"),
                               f"a runner refused the step: {reply.get('reason')}")
        return frame_to_tensor(reply, reply_payload)

    async def end_session(self, session_id: str) -> None:
        """Best effort (runners expire idle sessions anyway): never hides the error that ended a step."""
        from engine.transport.base import ConnectionClosed

        try:
            await self._request(("session_ended", session_id),
                                {"type": "end_session", "session_id": session_id,
                                 "route": self.addresses[1:], "reply_to": self.node.address}, b"", 30.0)
        except (ConnectionClosed, TimeoutError, PrismnError):
            pass

    async def close(self) -> None:
        # Close the link before cancelling its reader: the reader sees the runner's end-of-stream,
        # which is what Channel.close waits for.
        if self._first is not None:
            await self._first.close()
        for task in list(self._tasks):
            task.cancel()
        await self.node.close()

    async def _request(self, key: tuple[str, Any], header: dict[str, Any], payload: bytes,
                       timeout_s: float) -> tuple[dict[str, Any], bytes]:
        """Send a frame through the first runner and wait for the reply routed to `key`."""
        if self._first_closed:
            raise self._first_closed_error()
        reply = asyncio.get_running_loop().create_future()
        self._waiters[key] = reply
        try:
            if self.wan is not None:
                await asyncio.sleep(self.wan.delay_s(self.first_location, len(payload) + 256))
            await self._first.send(header, payload)
            return await asyncio.wait_for(reply, timeout_s)
        finally:
            self._waiters.pop(key, None)

    def _first_closed_error(self) -> PrismnError:
        return PrismnError(f"the first runner ({self.addresses[0]}) closed the connection")

    def _route(self, header: dict[str, Any], payload: bytes) -> None:
        """Hand a received frame to its waiter; an error naming no request fails every step in flight."""
        kind = header.get("type")
        if kind == "session_ended" or (kind == "error" and header.get("for_type") == "end_session"):
            keys = [("session_ended", header.get("session_id"))]
        elif kind in ("result", "error") and header.get("request_id") is not None:
            keys = [("request", header.get("request_id"))]
        elif kind == "error":
            keys = [k for k in self._waiters if k[0] == "request"]
        else:
            keys = []
        waiting = [self._waiters[k] for k in keys if k in self._waiters and not self._waiters[k].done()]
        for waiter in waiting:
            waiter.set_result((header, payload))
        if not waiting:
            try:
                self.unclaimed.put_nowait((header, payload))
            except asyncio.QueueFull:
                pass                         # a flood of frames nobody asked for is dropped

    async def _accept_loop(self) -> None:
        from engine.transport.base import ConnectionClosed

        while True:
            try:
                channel = await self.node.accept()
            except ConnectionClosed:
                return
            self._spawn(self._read_replies(channel))

    async def _read_replies(self, channel, first: bool = False) -> None:
        async for header, payload in channel.frames():
            self._route(header, payload)
        if first and not channel.closed:
            # Every step goes in through the first runner: without it nothing will come back.
            self._first_closed = True
            for waiter in self._waiters.values():
                if not waiter.done():
                    waiter.set_exception(self._first_closed_error())

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def open_pipeline(transport: str, runners: list[RunnerProcess],
                        ingress: Location | None = None) -> PipelineClient:
    """A client for runners this process started: they are assigned the routes (their own stages and
    this client) and a fresh access token, which the client presents; strangers get nothing. Given
    the ingress's place, the ingress -> first stage leg is emulated too when the runners emulate."""
    token = pipeline_token(runners)
    addresses = [r.address for r in runners]
    places = [_location(r.ready) for r in runners]
    emulated = ingress is not None and all(r.ready.get("emulated_wan") for r in runners)
    wan = WanEmulation(ingress, runners[0].ready.get("wan_bandwidth_mbps") or DEFAULT_BANDWIDTH_MBPS) \
        if emulated else None
    client = await PipelineClient.open(transport, addresses, token=token, wan=wan, first_location=places[0])
    try:
        locations = {a: p for a, p in zip(addresses, places, strict=True) if p is not None}
        if ingress is not None:
            locations[client.node.address] = ingress
        await asyncio.to_thread(assign_routes, runners, [*addresses, client.node.address], token, locations)
    except BaseException:
        await client.close()
        raise
    return client


def _location(ready: dict[str, Any]) -> Location | None:
    lat, lon = ready.get("lat"), ready.get("lon")
    return None if lat is None or lon is None else (float(lat), float(lon))


def pipeline_step(client: PipelineClient, session_id: str):
    """The decoding loop's `step` over a runner chain: ids in at the first runner, the last one's token back."""
    async def step(ids: list[int], position: int, sampling: dict[str, Any] | None) -> int:
        tensor = await client.forward(session_id, position, torch.tensor([ids], dtype=torch.int64),
                                      want="token", sampling=sampling)
        return int(tensor.reshape(-1)[-1])
    return step


async def generate_through(client: PipelineClient, prompt_ids: list[int], max_new_tokens: int,
                           eos_ids: set[int] | frozenset[int], sampling: Sampling = GREEDY,
                           stream: TextStream | None = None, session_id: str | None = None) -> dict[str, Any]:
    """engine.decoding's loop through the pipeline; ends the runners' session afterwards.
    The session id is unguessable unless given (runners also bind it to this client's connection)."""
    session_id = session_id or f"gen-{secrets.token_hex(12)}"
    try:
        result = await decode(pipeline_step(client, session_id), prompt_ids, sampling, max_new_tokens,
                              eos_ids, stream)
    finally:
        await client.end_session(session_id)
    new_ids, total_s = result.token_ids, result.total_s
    decode_s = total_s - result.first_token_s
    decode_tokens = max(0, len(new_ids) - 1)
    return {"token_ids": new_ids, "finish_reason": result.finish_reason, "total_s": total_s,
            "prefill_s": result.first_token_s,
            "tokens_per_s": len(new_ids) / total_s if total_s > 0 else 0.0,
            "decode_tokens_per_s": decode_tokens / decode_s if decode_s > 0 and decode_tokens else None}


async def greedy_generate(client: PipelineClient, prompt_ids: list[int], max_new_tokens: int,
                          eos_ids: set[int], session_id: str | None = None) -> dict[str, Any]:
    """Greedy decoding through the pipeline; stops at an EOS token (kept in the output, as HF does)."""
    return await generate_through(client, prompt_ids, max_new_tokens, eos_ids, session_id=session_id)


def parse_locations(text: str, count: int) -> list[Location]:
    """'48.86,2.35;52.52,13.40' -> [(48.86, 2.35), (52.52, 13.40)], exactly `count` of them."""
    places = []
    for part in str(text).split(";"):
        try:
            lat, lon = (float(x) for x in part.split(","))
        except ValueError:
            raise InvalidInput("locations", text, "expected 'lat,lon;lat,lon;...'") from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise InvalidInput("locations", part, "expected lat in -90..90 and lon in -180..180")
        places.append((lat, lon))
    if len(places) != count:
        raise InvalidInput("locations", text, f"expected {count} place(s), one per stage")
    return places


def parse_stages(text: str) -> list[tuple[int, int]]:
    """'0:10,10:20,20:30' -> [(0, 10), (10, 20), (20, 30)], contiguous from layer 0."""
    from engine.runner.shards import parse_layers

    stages = [parse_layers(part.strip()) for part in str(text).split(",") if part.strip()]
    if not stages:
        raise InvalidInput("stages", text, "expected A:B[,B:C...]")
    if stages[0][0] != 0:
        raise InvalidInput("stages", text, "the first stage must start at layer 0")
    for (_, end), (start, _) in zip(stages, stages[1:], strict=False):
        if start != end:
            raise InvalidInput("stages", text, f"stages must be contiguous: {end} then {start}")
    return stages


# ---- CLI --------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine generate", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--stages", required=True, help="layer ranges, e.g. 0:10,10:20,20:30")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0, help="0 = off")
    parser.add_argument("--seed", type=int, default=None, help="same seed, same text (default: random)")
    parser.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")
    parser.add_argument("--transport", default="iroh", choices=("iroh", "tcp"))
    parser.add_argument("--quant", default=None, choices=("fp32", "bf16", "fp16", "int8", "int4"),
                        help="how the stages hold their weights (default: --dtype, else fp32)")
    parser.add_argument("--dtype", default=None, choices=("fp32", "bf16", "fp16"),
                        help="compute dtype (default: the quant's own; bf16 for int8/int4)")
    parser.add_argument("--chat", dest="chat", action="store_true", default=None,
                        help="apply the chat template (default: on when the tokenizer has one)")
    parser.add_argument("--no-chat", dest="chat", action="store_false")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--locations", default=None,
                        help="place each stage at a city: 'lat,lon;lat,lon;...' (one per stage); its "
                             "frames then take as long as over the WAN between places (emulated)")
    parser.add_argument("--ingress", default=None, help="'lat,lon' of this ingress (default: the first stage's)")
    parser.add_argument("--wan-bandwidth-mbps", type=float, default=None,
                        help=f"emulated WAN bandwidth (default {DEFAULT_BANDWIDTH_MBPS:g} Mbit/s)")
    return parser


async def _run_pipeline(args: argparse.Namespace, runners: list[RunnerProcess], ids: list[int],
                        eos: frozenset[int], sampling: Sampling, stream: TextStream) -> dict[str, Any]:
    client = await open_pipeline(args.transport, runners, args.ingress)
    try:
        return await generate_through(client, ids, args.max_new_tokens, eos, sampling, stream)
    finally:
        await client.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    from engine.model.source import resolve_model
    from engine.runner.shards import load_config

    check_max_tokens(args.max_new_tokens, "max_new_tokens")
    sampling = Sampling.create(args.temperature, args.top_p, args.top_k, args.seed).with_seed(secrets.randbits(63))
    stop = check_stop(args.stop)
    source = resolve_model(args.model)              # converts a GGUF once, before the runners start
    config = load_config(source.folder)
    stages = parse_stages(args.stages)
    if stages[-1][1] != config.num_hidden_layers:
        raise InvalidInput("stages", args.stages,
                           f"the last stage must end at layer {config.num_hidden_layers} (the model's count)")
    tokenizer = load_tokenizer(source.folder)
    chat = source.instruct if args.chat is None else args.chat
    ids = prompt_ids(tokenizer, args.prompt, chat)
    eos = eos_token_ids(source.folder, tokenizer)
    stream = TextStream(tokenizer, stop=stop)
    locations = parse_locations(args.locations, len(stages)) if args.locations else None
    args.ingress = parse_locations(args.ingress, 1)[0] if args.ingress else (locations[0] if locations else None)
    runners = start_runners(str(source.folder), stages, args.transport, args.dtype, restrict_routes=True,
                            quant=args.quant, locations=locations, wan_bandwidth_mbps=args.wan_bandwidth_mbps)
    try:
        result = asyncio.run(_run_pipeline(args, runners, ids, eos, sampling, stream))
    finally:
        stop_runners(runners)
    return {
        "model": source.name, "transport": args.transport, "dtype": runners[0].ready.get("dtype"),
        "quant": runners[0].ready.get("quant"), "chat": chat,
        "sampling": {"temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": sampling.top_k,
                     "seed": sampling.seed},
        "prompt_ids": ids, "text": stream.sent,
        **result,
        "stages": [{"layers": list(r.layers), "address": r.address, "load_s": r.ready.get("load_s"),
                    "device": r.ready.get("device"), "metrics": r.ready.get("metrics"), "pid": r.ready.get("pid"),
                    "weight_bytes": r.ready.get("memory", {}).get("weight_bytes"), "memory": r.ready.get("memory")}
                   for r in runners],
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except (InvalidInput, PrismnError) as exc:
        print(json.dumps({"error": str(exc), "field": getattr(exc, "field", None)}) if args.json
              else f"error: {exc}", file=sys.stdout if args.json else sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        print(result["text"])
        print(f"# {len(result['token_ids'])} tokens, {result['tokens_per_s']:.1f} tokens/s over "
              f"{len(result['stages'])} stage(s) ({args.transport})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
