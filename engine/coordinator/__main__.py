"""Headless coordinator: `python -m engine.coordinator [--store sqlite:PATH|mongodb://...]`.

Prints the ticket runners join with (`python -m engine.runner --ticket T --lat .. --lon ..`), then
the live peers whenever they change. Optionally deploys a plan file and answers prompts from stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from engine.coordinator import server
from engine.errors import PrismnError
from engine.plan import Plan


async def _serve(args: argparse.Namespace) -> None:
    running = await server.start(args.store, transport=args.transport, bind_host=args.bind_host)
    print(f"ticket: {running.ticket}", flush=True)
    try:
        if args.plan:
            plan = Plan.from_dict(json.loads(Path(args.plan).read_text()))
            await _wait_for_peers(running, {s.peer_id for s in plan.stages}, args.wait_s)
            dep = await running.ingress.deploy(plan, args.model, _print_progress)
            print(f"deployed {dep.id} on {len(plan.stages)} runner(s)", flush=True)
        last_rows = None
        while True:
            rows = [(r["id"], r["status"], round(r["free_vram_gb"], 2)) for r in running.coordinator.peer_rows]
            if rows != last_rows:
                print("peers: " + (", ".join(f"{i} {s} {v} GB" for i, s, v in rows) or "none"), flush=True)
                last_rows = rows
            await asyncio.sleep(1.0)
    finally:
        await running.close()


async def _wait_for_peers(running: server.Running, peer_ids: set[str], wait_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while loop.time() < deadline:
        if peer_ids <= {r.id for r in running.coordinator.live_peers()}:
            return
        await asyncio.sleep(0.5)


def _print_progress(peer_id: str, fraction: float, status: str) -> None:
    print(f"  {peer_id}: {status} {fraction:.0%}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.coordinator", description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=None, help="sqlite:PATH or mongodb://... (default: user data dir)")
    parser.add_argument("--transport", default="iroh", choices=server.TRANSPORTS)
    parser.add_argument("--bind-host", default="0.0.0.0", help="interface to listen on")
    parser.add_argument("--plan", default=None, help="deploy this plan JSON once its runners have joined")
    parser.add_argument("--model", default=None, help="model source runners load (default: the plan's model)")
    parser.add_argument("--wait-s", type=float, default=60.0, help="how long to wait for the plan's runners")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
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
