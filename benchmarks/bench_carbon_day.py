"""Carbon over a simulated day: a deployment that re-places itself vs one that stays, same request stream.

Method: six grid zones get a SYNTHETIC diurnal carbon-intensity series (solar dips at midday,
evening peaks; shapes invented for this benchmark, not measured data). A fake Electricity Maps server
on 127.0.0.1 serves them in the API's documented format, and the real client + resolver fetch every
peer's intensity over HTTP every 15 simulated minutes (the coordinator's default re-plan period).
Both deployments start from the same plan at 00:00 (llama-3.1-70b bf16, 10 A100 peers, ingress
Frankfurt). "Stays" keeps it all day. "Re-places" asks the planner for a fresh plan each tick and
moves when the pure decision function (engine.planning.replacement) says the move repays itself
within 1 h at the request rate measured over the previous tick; the move's loading energy is
charged, and the old plan serves until the new stages are loaded (assumed 1 GB/s per runner).
This replays the planner + decision over time, not the live coordinator (a live day would take a day).
gCO2 are the planner's estimates (board power × time per token × intensity), not measurements.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.carbon import CarbonResolver  # noqa: E402
from engine.model import footprint, load_spec  # noqa: E402
from engine.planning.planner import make_plan  # noqa: E402
from engine.planning.replacement import ServingRate, decide_migration, plan_g_per_1k_tokens  # noqa: E402
from engine.planning.types import Ingress, Peer, Policy, Weights  # noqa: E402
from tests.engine.carbon.fake_grids import start_fake_grids  # noqa: E402

DAY_START = datetime(2026, 6, 21, 0, 0, tzinfo=UTC)
TICK = timedelta(minutes=15)
TOKENS_PER_REQUEST = 250
LOAD_GB_S = 1.0
WEIGHTS = Weights(carbon=0.8, distance=0.1, vram=0.1)
INGRESS = Ingress(50.11, 8.68, "frankfurt")


def solar(hour: float) -> float:
    """0 at night, 1 at 13:00: a clear-sky-like bump between 06:00 and 20:00."""
    return max(0.0, math.sin(math.pi * (hour - 6.0) / 14.0)) if 6.0 <= hour <= 20.0 else 0.0


def evening(hour: float) -> float:
    """+1 at 19:00, -1 at 07:00."""
    return math.cos(2 * math.pi * (hour - 19.0) / 24.0)


# SYNTHETIC gCO2eq/kWh per zone as a function of the hour of day (UTC), plus where the zone is.
ZONES = {
    "ES": ((40.42, -3.70), lambda h: 300 + 40 * evening(h) - 250 * solar(h)),
    "DE": ((50.11, 8.68), lambda h: 430 + 90 * evening(h) - 230 * solar(h)),
    "PL": ((52.23, 21.01), lambda h: 720 + 60 * evening(h) - 60 * solar(h)),
    "FR": ((48.86, 2.35), lambda h: 55 + 20 * evening(h)),
    "GB": ((51.51, -0.13), lambda h: 150 + 30 * evening(h) + 120 * solar(h)),   # windy nights
    "IT": ((45.46, 9.19), lambda h: 330 + 50 * evening(h) - 150 * solar(h)),
}
PEERS = [("fr-1", "FR"), ("es-1", "ES"), ("es-2", "ES"), ("de-1", "DE"), ("de-2", "DE"),
         ("pl-1", "PL"), ("pl-2", "PL"), ("gb-1", "GB"), ("gb-2", "GB"), ("it-1", "IT")]


def hour_of(at: datetime) -> float:
    return at.hour + at.minute / 60.0


def request_stream(ticks: int, seed: int) -> list[int]:
    """Requests per tick: a daytime-heavy rate (0.2..0.8 req/s) with Poisson-like noise; one fixed stream."""
    rnd = random.Random(seed)
    out = []
    for k in range(ticks):
        hour = k * TICK.total_seconds() / 3600.0
        mean = (0.5 + 0.3 * math.sin(math.pi * (hour - 8.0) / 12.0)) * TICK.total_seconds()
        out.append(max(0, round(rnd.gauss(mean, math.sqrt(mean)))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=0.10)
    parser.add_argument("--horizon-h", type=float, default=1.0)
    args = parser.parse_args()

    grids = start_fake_grids()
    for zone, ((lat, lon), shape) in ZONES.items():
        grids.set_zone(zone, lat, lon, lambda at, shape=shape: shape(hour_of(at)))
    grids.now = DAY_START
    monotonic = [0.0]
    resolver = CarbonResolver(token=grids.token, api_url=grids.url + "/em", use_env=False,
                              clock=lambda: monotonic[0], wall_clock=lambda: grids.now)
    fp = footprint(load_spec("llama-3.1-70b"), quant="bf16", context=4096, batch=1)

    def fresh_peers() -> tuple[Peer, ...]:
        where = [ZONES[zone][0] for _, zone in PEERS]
        signals = resolver.signals([w[0] for w in where], [w[1] for w in where])
        return tuple(Peer(name, lat, lon, free_vram_gb=72.0, carbon_g_per_kwh=s.g_per_kwh,
                          carbon_source=s.source, gpu="A100 80GB")
                     for (name, _), (lat, lon), s in zip(PEERS, where, signals, strict=True))

    ticks = int(timedelta(days=1) / TICK)
    stream = request_stream(ticks, args.seed)
    peers = fresh_peers()
    static = make_plan(fp, peers, INGRESS, Policy.CARBON, WEIGHTS)
    moving = static
    stays_g = moves_g = migration_g = 0.0
    migrations: list[str] = []
    rows = []
    for k in range(ticks):
        grids.now = DAY_START + k * TICK
        monotonic[0] = k * TICK.total_seconds()
        peers = fresh_peers()
        by_id = {p.id: p for p in peers}
        tokens = stream[k] * TOKENS_PER_REQUEST
        measured = ServingRate(stream[k - 1] / TICK.total_seconds() if k else 0.0, TOKENS_PER_REQUEST)
        served_old_s = 0.0
        old = moving
        if k:
            candidate = make_plan(fp, peers, INGRESS, Policy.CARBON, WEIGHTS)
            decision = decide_migration(moving, candidate, fp, peers, measured,
                                        load_gb_s={p.id: LOAD_GB_S for p in peers},
                                        horizon_h=args.horizon_h, threshold=args.threshold)
            if decision.migrate:
                migration_g += decision.migration_g
                served_old_s = min(decision.migration_s, TICK.total_seconds())
                migrations.append(f"{grids.now:%H:%M} {'+'.join(s.peer_id for s in old.stages)} -> "
                                  f"{'+'.join(s.peer_id for s in candidate.stages)} "
                                  f"(saves {decision.saving_fraction:.0%}, cost {decision.migration_g:.1f} g, "
                                  f"payback {decision.payback_s / 60:.1f} min, load {decision.migration_s:.0f} s)")
                moving = candidate
        stay_rate = plan_g_per_1k_tokens(static, fp, by_id)
        old_share = served_old_s / TICK.total_seconds()
        move_rate = (old_share * plan_g_per_1k_tokens(old, fp, by_id)
                     + (1 - old_share) * plan_g_per_1k_tokens(moving, fp, by_id))
        stays_g += stay_rate * tokens / 1000.0
        moves_g += move_rate * tokens / 1000.0
        if k % 8 == 0:
            rows.append(f"  {grids.now:%H:%M}  " + "  ".join(f"{z} {by_id[n].carbon_g_per_kwh:4.0f}"
                        for z, n in (("ES", "es-1"), ("DE", "de-1"), ("PL", "pl-1"), ("GB", "gb-1"),
                                     ("IT", "it-1"))) +
                        f"   stays {stay_rate:6.3f}  re-places {move_rate:6.3f} g/1k  on {'+'.join(s.peer_id for s in moving.stages)}")
    grids.stop()
    total_tokens = sum(stream) * TOKENS_PER_REQUEST
    moves_total = moves_g + migration_g
    print("SYNTHETIC diurnal intensity series (invented shapes, not measured grid data), served by a fake "
          "Electricity Maps API on 127.0.0.1; gCO2 are planner estimates")
    print(f"model llama-3.1-70b bf16, {len(PEERS)} A100 peers, ingress Frankfurt; {sum(stream)} requests "
          f"x {TOKENS_PER_REQUEST} tokens = {total_tokens:,} tokens over 24 h; re-plan every 15 min; "
          f"threshold {args.threshold:.0%}, horizon {args.horizon_h:g} h, load {LOAD_GB_S:g} GB/s (assumed)")
    print("every 2 h (gCO2eq/kWh per zone; gCO2 per 1k tokens of each deployment):")
    print("\n".join(rows))
    print(f"migrations: {len(migrations)}")
    for line in migrations:
        print("  " + line)
    print(f"stays:      {stays_g:10.1f} gCO2")
    print(f"re-places:  {moves_total:10.1f} gCO2  (serving {moves_g:.1f} + migrations {migration_g:.1f})")
    print(f"saving:     {stays_g - moves_total:10.1f} gCO2 = {(stays_g - moves_total) / stays_g:.1%} "
          f"of the deployment that stays")
    print(f"fake API requests: {grids.count('em')}")


if __name__ == "__main__":
    main()
