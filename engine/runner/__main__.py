"""`python -m engine.runner --model M --layers A:B [--listen tcp|iroh] ...`: serve one pipeline stage.

Loads only layers [A, B) (+ embeddings on the first stage, final norm + lm_head on the last), starts a
transport node, then prints ONE JSON line on stdout when ready::

    {"ready": true, "address": ..., "transport": ..., "layers": [A, B], "load_s": ..., "metrics": {...},
     "quant": "int8", "memory": {"weight_bytes": ..., "kv_cache_bytes": ..., "workspace_bytes": ...}}

so a parent process can read it. Loading progress goes to stderr as JSON lines. A bad argument
prints {"ready": false, "error": ..., "field": ...} and exits with status 2. With `--routes-from-stdin`
the runner sends only to the addresses its parent writes to stdin ({"routes": [...], "token": T,
"locations": {address: [lat, lon]}} lines, each confirmed with {"routes_assigned": n} on stdout), as
`python -m engine generate` does, and serves only channels that present T; without it, it dials nobody
and answers each request on the channel it came in on. Strangers are bounded either way
(engine.runner.limits). `--emulate-wan` (with --lat/--lon) delays each frame it sends as the WAN
between its place and the receiver's would.

`python -m engine.runner --ticket T --lat .. --lon ..` instead joins a coordinator, which assigns the
stage (engine.runner.agent); `--ticket-file F` or $PRISMN_TICKET keep the ticket (which holds the
join secret) out of the command line other local users can read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from typing import Any

# Set before torch loads OpenMP. A runner idles between pipeline steps while other stages compute; with
# the default (spinning) policy its idle OpenMP threads burn the cores a co-located stage needs
# (3 CPU stages on 2 cores: 20 ms/token instead of 4 ms on the tiny test model).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from engine.errors import InvalidInput, PrismnError  # noqa: E402

QUANT_CHOICES = ("fp32", "bf16", "fp16", "int8", "int4")     # engine.model.sizing.QUANTS, without torch


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine.runner", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="smollm2, a HF folder, a .gguf file or a hub id")
    parser.add_argument("--layers", required=True, help="A:B, decoder layers A (inclusive) to B (exclusive)")
    parser.add_argument("--listen", default="iroh", choices=("iroh", "tcp"))
    parser.add_argument("--bind", default="127.0.0.1:0", help="host:port to bind (0.0.0.0:0 to accept other machines)")
    parser.add_argument("--quant", default=None, choices=QUANT_CHOICES,
                        help="how this stage holds its weights (default: --dtype, else fp32); int8/int4 are "
                             "weight-only, quantised at load")
    parser.add_argument("--dtype", default=None, choices=("fp32", "bf16", "fp16"),
                        help="compute dtype (default: the quant's own; bf16 for int8/int4)")
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda when present)")
    parser.add_argument("--lat", type=float, default=None)
    parser.add_argument("--lon", type=float, default=None)
    parser.add_argument("--carbon", type=float, default=None, help="grid carbon intensity, gCO2/kWh")
    parser.add_argument("--vram-gb", type=float, default=None, help="report this much free VRAM (demos)")
    parser.add_argument("--idle-timeout-s", type=float, default=600.0,
                        help="free a session's KV cache after this long without a request")
    parser.add_argument("--routes-from-stdin", action="store_true",
                        help='send only to the addresses read from stdin, one JSON line {"routes": [...], '
                             '"token": T} each (the process that started this runner); without it, answer '
                             "only on a request's own channel")
    parser.add_argument("--emulate-wan", action="store_true",
                        help="delay sent frames by the latency model between --lat/--lon and the receiver")
    parser.add_argument("--wan-bandwidth-mbps", type=float, default=None, help="emulated WAN bandwidth")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--log-level", default="WARNING")
    return parser


def _emit(stream, record: dict[str, Any]) -> None:
    stream.write(json.dumps(record) + "\n")
    stream.flush()


async def _serve(args: argparse.Namespace) -> None:
    import torch

    from engine.model.source import resolve_model
    from engine.runner.device_metrics import read_metrics
    from engine.runner.energy import EnergyMeter
    from engine.runner.memory import measure_memory
    from engine.runner.quantize import compute_dtype_name
    from engine.runner.server import RunnerServer, open_node, stage_info
    from engine.runner.shards import load_config, load_stage, parse_layers
    from engine.runner.stage import StageExecutor

    if args.threads:
        torch.set_num_threads(args.threads)
    for name in ("lat", "lon", "carbon", "vram_gb"):
        value = getattr(args, name)
        if value is not None and value != value:  # NaN
            raise InvalidInput(name, value, "expected a number")
    if args.lat is not None and not -90 <= args.lat <= 90:
        raise InvalidInput("lat", args.lat, "expected -90..90")
    if args.lon is not None and not -180 <= args.lon <= 180:
        raise InvalidInput("lon", args.lon, "expected -180..180")
    if args.carbon is not None and args.carbon < 0:
        raise InvalidInput("carbon", args.carbon, "expected >= 0 gCO2/kWh")
    metrics = read_metrics(vram_gb_override=args.vram_gb)
    wan = None
    if args.emulate_wan:
        from engine.transport.wan import DEFAULT_BANDWIDTH_MBPS, WanEmulation

        if args.lat is None or args.lon is None:
            raise InvalidInput("emulate_wan", True, "needs --lat and --lon (where this runner sits)")
        wan = WanEmulation((args.lat, args.lon), args.wan_bandwidth_mbps or DEFAULT_BANDWIDTH_MBPS)

    started = time.perf_counter()
    source = resolve_model(args.model)
    config = load_config(source.folder)
    layer_start, layer_end = parse_layers(args.layers, config.num_hidden_layers)
    last_report = [0.0]

    def progress(done_bytes: int, total_bytes: int) -> None:
        now = time.perf_counter()
        if done_bytes == total_bytes or now - last_report[0] > 0.5:
            last_report[0] = now
            _emit(sys.stderr, {"loading": {"loaded_bytes": done_bytes, "total_bytes": total_bytes}})

    stage = load_stage(source.folder, layer_start, layer_end, args.dtype, args.device, progress, quant=args.quant)
    load_s = time.perf_counter() - started
    executor = StageExecutor(stage, idle_timeout_s=args.idle_timeout_s)
    memory = measure_memory(executor)
    node = await open_node(args.listen, args.bind)
    energy = EnergyMeter(str(executor.device))
    extra = {"lat": args.lat, "lon": args.lon, "carbon_g_per_kwh": args.carbon, "load_s": load_s,
             "metrics": metrics.to_dict(), "transport": args.listen, "address": node.address,
             "emulated_wan": wan is not None, "wan_bandwidth_mbps": wan.bandwidth_mbps if wan else None,
             "energy_method": energy.method, "quant": stage.quant, "memory": memory}
    dtype = compute_dtype_name(stage.quant, args.dtype)
    server = RunnerServer(executor, node, stage_info(executor, source.name, dtype, extra),
                          restrict_routes=args.routes_from_stdin, wan=wan, energy=energy)
    if args.routes_from_stdin:
        _read_routes_in_background(server, asyncio.get_running_loop())
    _emit(sys.stdout, {"ready": True, "pid": os.getpid(), **server.info})
    try:
        await server.serve_forever()
    finally:
        await server.close()


async def _allow(server: Any, routes: Any, token: Any, locations: Any = None) -> None:
    server.allow_routes(routes, token, locations)


def _read_routes_in_background(server: Any, loop: asyncio.AbstractEventLoop) -> None:
    """Each stdin line {"routes": [...], "token": T} replaces the addresses the server may send to
    (and the access token callers must present). Only the parent process holds this pipe, so these
    are the routes it assigned, not ones a network peer named. Each line is answered on stdout with
    {"routes_assigned": count} once in force, or {"routes_assigned": false, "error": ...}."""
    import threading

    def read() -> None:
        for line in sys.stdin:
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or "routes" not in record:
                    raise InvalidInput("routes", line.strip()[:80], 'expected {"routes": [addresses]}')
                routes = record["routes"]
                # allow_routes checks both before changing anything: a bad line keeps the last good one.
                locations = {a: (float(p[0]), float(p[1])) for a, p in (record.get("locations") or {}).items()}
                asyncio.run_coroutine_threadsafe(_allow(server, routes, record.get("token"), locations),
                                                 loop).result()
            except (ValueError, TypeError, IndexError, AttributeError, InvalidInput) as exc:
                logging.getLogger(__name__).warning("ignoring a routes line: %s", exc)
                _emit(sys.stdout, {"routes_assigned": False, "error": str(exc)})
                continue
            _emit(sys.stdout, {"routes_assigned": len(routes)})

    threading.Thread(target=read, name="routes-from-stdin", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    joining = any(arg.split("=")[0] in ("--ticket", "--ticket-file") for arg in argv)
    if joining or (os.environ.get("PRISMN_TICKET") and not any(a.split("=")[0] == "--model" for a in argv)):
        # Join mode: the coordinator tells this runner which stage to load (engine.runner.agent).
        from engine.runner.agent import main as agent_main

        return agent_main(argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s runner %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_serve(args))
    except (InvalidInput, PrismnError) as exc:
        _emit(sys.stdout, {"ready": False, "error": str(exc), "field": getattr(exc, "field", None)})
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
