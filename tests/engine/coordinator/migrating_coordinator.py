"""A coordinator caught in a migration, for a test to SIGKILL (test_coordinator_restart):

    python -m tests.engine.coordinator.migrating_coordinator STORE MODEL FROM,FROM TO,TO

On STORE (as the headless coordinator opens it, TCP on loopback): prints `ticket: T`; once the four
runners have joined, deploys MODEL (fp32) on the runners FROM and prints `deployed ID`; then migrates
(engine.coordinator.replacement, the GUI's re-placement) to a plan on the runners TO, printing
`migrating ID` when the new stages are sent, and waits there to be killed (it exits after 300 s).
"""

from __future__ import annotations

import asyncio
import sys

from engine.coordinator import server
from engine.coordinator.deployment import footprint_for
from engine.coordinator.replacement import Replacement
from engine.model import footprint, load_spec
from engine.planning.planner import make_plan
from engine.planning.replacement import decide_migration
from engine.planning.types import Ingress, Policy, Weights

INGRESS = Ingress(lat=50.11, lon=8.68)
LIFETIME_S = 300.0


async def main(store: str, model: str, from_peers: list[str], to_peers: list[str]) -> None:
    running = await server.start(store, transport="tcp", bind_host="127.0.0.1")
    print(f"ticket: {running.ticket}", flush=True)
    coordinator = running.coordinator
    loop = asyncio.get_running_loop()
    deadline_s = loop.time() + LIFETIME_S
    while {r.id for r in coordinator.live_peers()} < {*from_peers, *to_peers}:
        if loop.time() > deadline_s:
            raise SystemExit("the runners did not join")
        await asyncio.sleep(0.1)
    fp = footprint(load_spec(model), "fp32")

    def plan_on(peer_ids: list[str]):
        peers = tuple(p for p in coordinator.peers_for() if p.id in peer_ids)
        return make_plan(fp, peers, INGRESS, Policy.CARBON, Weights())

    old = await running.orchestrator.deploy(plan_on(from_peers), model)
    print(f"deployed {old.id}", flush=True)
    candidate = plan_on(to_peers)
    decision = decide_migration(old.plan, candidate, footprint_for(old.plan, model), coordinator.peers_for(),
                                running.orchestrator.traffic.rate() or _no_traffic(), {}, 1.0, 0.0)
    migration = loop.create_task(Replacement(coordinator, running.orchestrator).migrate(candidate, decision, "auto"))
    while coordinator.pending_deployment is None and not migration.done():
        await asyncio.sleep(0.01)
    if coordinator.pending_deployment is not None:
        print(f"migrating {coordinator.pending_deployment.id}", flush=True)
    await asyncio.sleep(max(0.0, deadline_s - loop.time()))


def _no_traffic():
    from engine.planning.replacement import ServingRate

    return ServingRate(0.0, 0.0)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4].split(",")))
