"""Headless coordinator: `python -m engine.coordinator [--store sqlite:PATH|mongodb://...]` (or `prismn-coordinator`).

    python -m engine.coordinator --transport tcp --bind-host 127.0.0.1 --store sqlite:PATH \\
        --api-bind 127.0.0.1:PORT --model smollm2 --min-peers 3

Serving, in order:
1. start the coordinator; print `ticket: T` (runners join with `python -m engine.runner --ticket T ...`);
2. start the OpenAI-compatible API (`--api-bind none`: no API); print `api: http://HOST:PORT/v1` (and
   `api key: K` when bound beyond loopback without PRISMN_API_KEY);
3. deploy: `--plan FILE` once its runners joined (waiting at most `--wait-s`), or with
   `--model`, once `--min-peers` runners are live, plan over them (`--policy`, `--weights`, `--quant`,
   `--context` as in `engine plan`; the ingress is `--ingress LAT,LON`, else the live runners' mean
   position) and deploy; print `deployed ID on N runner(s): ...` once its stages are ready, or
   `not deployed: WHY` (an infeasible plan waits for the peers to change);
4. serve until stopped, printing the peers whenever they change; when a deployed runner is lost,
   re-plan over the live ones and redeploy (a request in flight does the same and retries);
5. meanwhile re-place as the app does (engine.coordinator.replacement): every `--replan-every`
   (default 15 min) and when runners join or leave, re-plan at fresh intensities of `--signal` and
   migrate when the new plan saves more than `--replan-threshold` of gCO2 per 1k tokens and repays the
   move within `--replan-horizon-h` at the measured request rate. Headless has no one to ask, so the
   modes are `--replan auto` (default) and `off`. Prints `replan: ...` per check, `migrated ...` per move.

Carbon sources come from the environment as in the app (engine.carbon.resolver): Electricity Maps with
ELECTRICITYMAPS_TOKEN (ELECTRICITYMAPS_API_URL), the GB National Grid API unless PRISMN_NATIONALGRID=0,
WattTime with WATTTIME_USERNAME / WATTTIME_PASSWORD; else the shipped yearly averages. The first plan
uses the same signal as the re-placement.

A restart on the same store restores the deployment (`restored deployment ID ...`): its runners
rejoin by themselves and keep their stages; one that is not back within RESTORE_GRACE_S is re-planned
around. Meanwhile the API answers 503 with Retry-After (after `--ready-wait-s`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import re
import sys
from pathlib import Path

from engine.carbon import CarbonResolver
from engine.carbon.electricitymaps import DEFAULT_CACHE_TTL_S
from engine.carbon_values import SignalKind
from engine.coordinator import server
from engine.coordinator.deployment import LOST
from engine.errors import InfeasiblePlan, InvalidInput, PrismnError
from engine.plan import Plan
from engine.planning.replacement import DEFAULT_HORIZON_H, DEFAULT_THRESHOLD

log = logging.getLogger("prismn.coordinator")

WATCH_S = 0.5
DEFAULT_REPLAN_EVERY = "15m"
REPLAN_MODES = ("auto", "off")


async def _serve(args: argparse.Namespace) -> None:
    from engine.api.server import start_api

    running = await server.start(args.store, transport=args.transport, bind_host=args.bind_host)
    print(f"ticket: {running.ticket}", flush=True)
    resolver = carbon_resolver(args)
    if args.replan != "off":
        running.replacement = replacement_for(running, resolver, args)
        running.replacement.start()
    restored = running.coordinator.deployment
    if restored is not None:
        print(f"restored deployment {restored.id} from the store; waiting for its runners to rejoin: "
              + ", ".join(f"{s.peer_id} {s.layer_start}:{s.layer_end}" for s in restored.plan.stages), flush=True)
    api = None
    try:
        if args.api_bind != "none":
            api = await start_api(running.orchestrator, args.api_bind, max_in_flight=args.max_in_flight,
                                  ready_wait_s=args.ready_wait_s)
            print(f"api: {api.url}", flush=True)
            if api.key_generated:
                print(f"api key: {api.api_key}", flush=True)
        if args.plan:
            plan = Plan.from_dict(json.loads(Path(args.plan).read_text()))
            await _wait_for_peers(running, {s.peer_id for s in plan.stages}, args.wait_s)
            await running.orchestrator.deploy(plan, args.model, _print_progress)
        await _watch(running, args, resolver)
    finally:
        if api is not None:
            await api.close()
        await running.close()


async def _watch(running: server.Running, args: argparse.Namespace, resolver: CarbonResolver) -> None:
    """Print peer changes; with --model, plan + deploy once enough runners are live, and re-plan on loss."""
    last_rows, last_failure, announced = None, None, None
    while True:
        rows = [(r["id"], r["status"], round(r["free_vram_gb"], 2)) for r in running.coordinator.peer_rows]
        if rows != last_rows:
            print("peers: " + (", ".join(f"{i} {s} {v} GB" for i, s, v in rows) or "none"), flush=True)
            last_rows = rows
            try:
                await _keep_deployed(running, args, resolver)
                last_failure = None
            except (InfeasiblePlan, PrismnError) as exc:
                if str(exc) != last_failure:
                    print(f"not deployed: {exc}", flush=True)
                    last_failure = str(exc)
                # infeasible: wait for the peers to change; anything else: try again next round
                last_rows = rows if isinstance(exc, InfeasiblePlan) else None
        dep = running.coordinator.deployment
        if dep is not None and dep.ready and dep.id != announced:
            # one line whichever way it got ready: deployed, re-planned, or its runners rejoined
            print(f"deployed {dep.id} on {len(dep.plan.stages)} runner(s): "
                  + ", ".join(f"{s.peer_id} {s.layer_start}:{s.layer_end}" for s in dep.plan.stages), flush=True)
            announced = dep.id
        await asyncio.sleep(WATCH_S)


async def _keep_deployed(running: server.Running, args: argparse.Namespace, resolver: CarbonResolver) -> None:
    dep = running.coordinator.deployment
    live = running.coordinator.live_peers()
    if dep is None:
        if args.model is None or args.plan or len(live) < args.min_peers:
            return
        plan = await asyncio.to_thread(_plan_over, live, args, resolver)
        print(f"planned {plan.model.name} over {len(plan.stages)} of {len(live)} runner(s) "
              f"({args.policy}): " + ", ".join(f"{s.peer_id} {s.layer_start}:{s.layer_end}" for s in plan.stages),
              flush=True)
        await running.orchestrator.deploy(plan, args.model, _print_progress)
    elif any(status == LOST for status in dep.status.values()):
        print("a deployed runner was lost: re-planning over the live runners", flush=True)
        await running.orchestrator.readiness()
    elif not all(running.coordinator.registry.is_alive(p) for p in dep.status):
        # restored from the store: its runners rejoin (keeping their stages), or it is re-planned
        await running.orchestrator.readiness()


def _plan_over(live, args: argparse.Namespace, resolver: CarbonResolver) -> Plan:
    from engine.coordinator.replacement import fresh_peers
    from engine.model import footprint, load_spec
    from engine.planning.planner import make_plan
    from engine.planning.types import Ingress, Policy

    fp = footprint(load_spec(args.model), quant=args.quant, context=args.context)
    peers = tuple(fresh_peers(live, resolver, SignalKind(args.signal)))     # the signal re-placement uses
    ingress = args.ingress or Ingress(lat=sum(p.lat for p in peers) / len(peers),
                                      lon=sum(p.lon for p in peers) / len(peers), name="runners' mean")
    plan = make_plan(fp, peers, ingress, Policy(args.policy), args.weights)
    if not plan.feasible:
        raise InfeasiblePlan(plan.shortfall_gb or 0.0, plan.shortfall_layers or 0,
                             f"{len(peers)} live runner(s) cannot hold {plan.model.name}; waiting for more")
    return plan


async def _wait_for_peers(running: server.Running, peer_ids: set[str], wait_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while loop.time() < deadline:
        if peer_ids <= {r.id for r in running.coordinator.live_peers()}:
            return
        await asyncio.sleep(0.5)


def _print_progress(peer_id: str, fraction: float, status: str) -> None:
    print(f"  {peer_id}: {status} {fraction:.0%}", flush=True)


# ---- re-placement -----------------------------------------------------------------------------

def carbon_resolver(args: argparse.Namespace) -> CarbonResolver:
    """The carbon sources from the environment, as the app has them; a live value is cached for at most
    one re-plan period, so each check sees the grid as it is now."""
    return CarbonResolver(use_env=True, cache_ttl_s=min(DEFAULT_CACHE_TTL_S, args.replan_every))


def replacement_for(running: server.Running, resolver: CarbonResolver, args: argparse.Namespace):
    """The coordinator's re-placement schedule (auto mode) as the flags set it, printing what it does."""
    from engine.coordinator.replacement import Replacement

    replacement = Replacement(running.coordinator, running.orchestrator, resolver=resolver,
                              period_s=args.replan_every, horizon_h=args.replan_horizon_h,
                              threshold=args.replan_threshold, mode="auto", signal=SignalKind(args.signal))
    replacement.on_change = ReplanLog(replacement)
    return replacement


class ReplanLog:
    """Prints each check's decision (`replan: stay|migrate: reason`) and each finished migration."""

    def __init__(self, replacement) -> None:
        self.replacement = replacement
        self.decision = None
        self.reported = 0                 # history records already printed

    def __call__(self) -> None:
        decision = self.replacement.last_decision
        if decision is not None and decision is not self.decision:
            self.decision = decision
            print(f"replan: {'migrate' if decision.migrate else 'stay'}: {decision.reason}", flush=True)
        history = self.replacement.history
        while self.reported < len(history) and history[self.reported].outcome != "pending":
            record = history[self.reported]
            print(f"migrated {','.join(record.from_peers)} -> {','.join(record.to_peers)}: {record.outcome} "
                  f"in {record.took_s:.1f} s (estimated saving {record.decision.saving_fraction:.0%} "
                  f"gCO2/1k tokens, move {record.decision.migration_g:.3g} g)", flush=True)
            self.reported += 1


def parse_period_s(text: str) -> float:
    """'15' (minutes), '90s', '15m', '1.5h' -> seconds, > 0."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([smh]?)\s*", text)
    seconds = float(match[1]) * {"s": 1, "m": 60, "": 60, "h": 3600}[match[2]] if match else math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidInput("replan_every", text, "expected minutes, or a duration such as 90s, 15m, 1h (> 0)")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    from engine.cli import _checked, _float_flag, _int_flag, parse_ingress, parse_weights
    from engine.cli_carbon import add_signal_flag
    from engine.planning.types import Policy, Weights

    parser = argparse.ArgumentParser(prog="python -m engine.coordinator", description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=None, help="sqlite:PATH or mongodb://... (default: user data dir)")
    parser.add_argument("--transport", default="iroh", choices=server.TRANSPORTS)
    parser.add_argument("--bind-host", default="0.0.0.0", help="interface runners connect to")
    parser.add_argument("--api-bind", default="127.0.0.1:8000",
                        help="HOST:PORT of the OpenAI-compatible API (default 127.0.0.1:8000; 'none': off); "
                             "beyond loopback a bearer key is required (PRISMN_API_KEY or generated)")
    parser.add_argument("--max-in-flight", type=_int_flag("max_in_flight"), default=32,
                        help="API requests served at once; more get 429")
    parser.add_argument("--ready-wait-s", type=_float_flag("ready_wait_s"), default=5.0,
                        help="how long a request waits for a deployment that is not ready (runners rejoining, "
                             "a re-plan) before it gets 503 with Retry-After (default 5)")
    parser.add_argument("--plan", default=None, help="deploy this plan JSON once its runners have joined")
    parser.add_argument("--model", default=None,
                        help="model to serve (a preset such as smollm2, a folder, a .gguf); without --plan it is "
                             "planned over the live runners once --min-peers joined")
    parser.add_argument("--min-peers", type=_int_flag("min_peers"), default=1,
                        help="runners to wait for before planning (default 1)")
    parser.add_argument("--policy", choices=[p.value for p in Policy], default=Policy.CARBON.value)
    parser.add_argument("--weights", type=_checked(parse_weights), default=Weights(),
                        help="carbon=X,distance=Y,vram=Z (as in engine plan)")
    parser.add_argument("--quant", default="bf16", help="fp32|bf16|fp16|int8|int4 (sizing, as in engine plan)")
    parser.add_argument("--context", type=_int_flag("context"), default=4096, help="tokens of KV cache")
    parser.add_argument("--ingress", type=_checked(parse_ingress), default=None,
                        help="LAT,LON of the ingress (default: the live runners' mean position)")
    parser.add_argument("--wait-s", type=_float_flag("wait_s"), default=60.0,
                        help="how long to wait for the plan's runners")
    parser.add_argument("--replan", choices=REPLAN_MODES, default="auto",
                        help="re-place the running deployment when the grids change: auto (default) or off")
    parser.add_argument("--replan-every", type=_checked(parse_period_s), default=parse_period_s(DEFAULT_REPLAN_EVERY),
                        help="how often to re-plan at fresh intensities: minutes, or 90s / 15m / 1h "
                             f"(default {DEFAULT_REPLAN_EVERY}; also on every join or loss)")
    parser.add_argument("--replan-threshold", type=_float_flag("replan_threshold"), default=DEFAULT_THRESHOLD,
                        help="smallest relative saving of gCO2 per 1k tokens worth a move "
                             f"(default {DEFAULT_THRESHOLD:g})")
    parser.add_argument("--replan-horizon-h", type=_float_flag("replan_horizon_h"), default=DEFAULT_HORIZON_H,
                        help=f"a move must repay its cost within this many hours (default {DEFAULT_HORIZON_H:g})")
    add_signal_flag(parser)
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: list[str] | None = None) -> int:
    from engine.cli import _FlagError

    try:
        args = build_parser().parse_args(argv)
        if args.min_peers < 1:
            raise InvalidInput("min_peers", args.min_peers, "expected >= 1")
        if args.replan_threshold < 0 or args.replan_threshold >= 1:
            raise InvalidInput("replan_threshold", args.replan_threshold, "expected a fraction in [0, 1)")
        if args.replan_horizon_h <= 0:
            raise InvalidInput("replan_horizon_h", args.replan_horizon_h, "expected hours > 0")
        if not 0 <= args.ready_wait_s <= 3600:
            raise InvalidInput("ready_wait_s", args.ready_wait_s, "expected 0..3600 seconds")
        if args.api_bind != "none":
            from engine.api.server import parse_bind

            parse_bind(args.api_bind)
    except _FlagError as exc:
        print(f"error: {exc.error}", file=sys.stderr)
        return 2
    except InvalidInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        asyncio.run(_serve(args))
    except PrismnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
