"""make_plan: footprint + peers + ingress + policy -> Plan. The planning core's entry point.

Steps: validate -> order peers by policy (scoring) -> smallest feasible set (selection) ->
shortest closed tour ingress -> stages -> ingress (ordering) -> contiguous layer ranges
(assignment) -> metrics. Pure: values in, a Plan out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from engine import GB
from engine.errors import InvalidInput
from engine.geo import pairwise_km, unit_vectors
from engine.model.footprint import ModelFootprint
from engine.plan import ModelInfo, Plan, Stage
from engine.planning.assignment import fits, layer_ranges
from engine.planning.estimates import JOULES_PER_KWH, StageTiming, layer_joules, plan_metrics, stage_times_s
from engine.planning.gpus import GpuSpec, peer_gpu_spec
from engine.planning.inputs import PeerColumns, check_footprint, check_weights, peer_columns
from engine.planning.latency import one_way_ms
from engine.planning.ordering import best_cycle, cycle_with_fixed_ends
from engine.planning.scoring import policy_order
from engine.planning.selection import Capacities, Selection, layer_capacities, select_peers
from engine.planning.types import Ingress, Peer, Policy, Weights


@dataclass(frozen=True, eq=False)
class PlanningInputs:
    """Validated inputs with their numpy columns, shared by several plans of one swarm."""

    footprint: ModelFootprint
    peers: tuple[Peer, ...]
    ingress: Ingress
    columns: PeerColumns
    caps: Capacities
    gpus: tuple[GpuSpec, ...]            # each peer's effective specs (its overrides, else the table)
    g_co2_per_layer_token: np.ndarray    # what one layer's token emits on each peer


def prepare(footprint: ModelFootprint, peers: tuple[Peer, ...], ingress: Ingress) -> PlanningInputs:
    check_footprint(footprint)
    columns = peer_columns(peers, ingress)
    # A swarm has few distinct GPUs: look each one up and time its layer once.
    kinds: dict[tuple, int] = {}
    kind_of = np.fromiter((kinds.setdefault((p.gpu, p.tflops, p.power_w), len(kinds)) for p in peers),
                          dtype=np.int64, count=len(peers))
    kind_specs = [peer_gpu_spec(*key) for key in kinds]
    joules = layer_joules(footprint, kind_specs)[kind_of]
    if len(peers):
        # a peer that timed itself: its measured layer time at its power
        power_w = np.array([kind_specs[k].power_w for k in kind_of], dtype=np.float64)
        measured = ~np.isnan(columns.ms_per_layer)
        joules = np.where(measured, power_w * np.nan_to_num(columns.ms_per_layer) / 1000.0, joules)
    return PlanningInputs(footprint, tuple(peers), ingress, columns,
                          layer_capacities(footprint, columns.free_vram_gb),
                          tuple(kind_specs[k] for k in kind_of),
                          joules / JOULES_PER_KWH * columns.carbon_g_per_kwh)


def _policy(policy: Policy | str) -> Policy:
    try:
        return Policy(policy)
    except ValueError:
        raise InvalidInput("policy", policy, "expected one of " +
                           ", ".join(p.value for p in Policy)) from None


def make_plan(footprint: ModelFootprint, peers: tuple[Peer, ...], ingress: Ingress,
              policy: Policy, weights: Weights) -> Plan:
    """The plan for `policy`; infeasible swarms give Plan(feasible=False) with the shortfall."""
    policy = _policy(policy)
    normalised = check_weights(weights)
    return plan_prepared(prepare(footprint, peers, ingress), policy, normalised)


def plan_both(footprint: ModelFootprint, peers: tuple[Peer, ...], ingress: Ingress,
              weights: Weights) -> tuple[Plan, Plan]:
    """(VRAM baseline plan, carbon plan) over the same validated inputs."""
    normalised = check_weights(weights)
    inputs = prepare(footprint, peers, ingress)
    return (plan_prepared(inputs, Policy.VRAM, normalised),
            plan_prepared(inputs, Policy.CARBON, normalised))


def plan_prepared(inputs: PlanningInputs, policy: Policy, weights: Weights) -> Plan:
    """make_plan on prepared inputs; `weights` already normalised (VRAM records, ignores them)."""
    fp = inputs.footprint
    base = plan_header(inputs, policy, weights)
    order = policy_order(policy, inputs.columns, weights, inputs.g_co2_per_layer_token)
    chosen = select_peers(fp, inputs.caps, order)
    if not isinstance(chosen, Selection):
        return Plan(**base, feasible=False, stages=(), shortfall_gb=chosen.shortfall_gb,
                    shortfall_layers=chosen.shortfall_layers)
    stage_peers, leg_km = stage_tour(inputs, chosen)
    ranges = layer_ranges(inputs.caps, stage_peers, fp.num_layers)
    return plan_from_stages(inputs, base, stage_peers, ranges, leg_km)


def plan_header(inputs: PlanningInputs, policy: Policy, weights: Weights) -> dict:
    """The fields every plan of these inputs shares (Plan keyword arguments)."""
    fp = inputs.footprint
    return dict(
        policy=policy.value,
        weights={"carbon": weights.carbon, "distance": weights.distance, "vram": weights.vram},
        model=ModelInfo(fp.name, fp.num_layers, fp.param_count, fp.quant),
        ingress={"lat": float(inputs.ingress.lat), "lon": float(inputs.ingress.lon)},
    )


def plan_from_stages(inputs: PlanningInputs, base: dict, stage_peers: list[int],
                     ranges: list[tuple[int, int]], leg_km: np.ndarray | None = None) -> Plan:
    """The feasible plan whose stages, in tour order, are `stage_peers` holding `ranges`."""
    if leg_km is None:
        leg_km = tour_legs_km(inputs, stage_peers)
    stages = tuple(_stage(inputs, p, start, end, i == 0, i == len(ranges) - 1)
                   for i, (p, (start, end)) in enumerate(zip(stage_peers, ranges, strict=True)))
    gpus = [inputs.gpus[p] for p in stage_peers]
    rtt = inputs.columns.rtt_ms
    fp = inputs.footprint
    timings = [_timing(inputs.peers[p]) for p in stage_peers]
    leg_rtt = _leg_rtts(inputs, stage_peers)
    metrics = plan_metrics(fp, stages, gpus, leg_km,
                           (float(rtt[stage_peers[0]]), float(rtt[stage_peers[-1]])), timings, leg_rtt)
    stages = tuple(replace(s, est_compute_ms=1000.0 * sec, compute_source="gpu table" if t is None else "measured")
                   for s, sec, t in zip(stages, stage_times_s(fp, stages, gpus, timings), timings, strict=True))
    return Plan(**base, feasible=True, stages=stages, metrics=metrics)


def _timing(peer: Peer) -> StageTiming | None:
    return StageTiming(peer.ms_per_layer, peer.head_ms) if peer.ms_per_layer is not None else None


def _leg_rtts(inputs: PlanningInputs, stage_peers: list[int]) -> np.ndarray | None:
    """Measured round trips of the legs between stages (NaN where unknown); None when none is."""
    peers = [inputs.peers[p] for p in stage_peers]
    if not any(p.rtt_ms_to for p in peers):
        return None
    legs = np.full(len(peers) + 1, np.nan)
    for i, (a, b) in enumerate(zip(peers, peers[1:], strict=False), start=1):
        legs[i] = dict(a.rtt_ms_to).get(b.id, np.nan)
    return legs


def tour_legs_km(inputs: PlanningInputs, stage_peers: list[int]) -> np.ndarray:
    """km of each leg ingress -> stage 1 -> ... -> stage k -> ingress."""
    cols = inputs.columns
    peers = np.asarray(stage_peers, dtype=np.int64)
    dist = pairwise_km(np.concatenate([[inputs.ingress.lat], cols.lat[peers]]),
                       np.concatenate([[inputs.ingress.lon], cols.lon[peers]]))
    walk = np.arange(len(peers) + 2) % (len(peers) + 1)       # 0, 1, ..., k, 0
    return dist[walk[:-1], walk[1:]]


def stage_tour(inputs: PlanningInputs, chosen: Selection, *,
               by_latency: bool = False) -> tuple[list[int], np.ndarray]:
    """Stage peers in tour order (the ends able to hold embeddings / head) and the legs' km.

    The tour is the shortest in km; `by_latency` makes it the fastest instead, the ingress legs
    costing the measured RTT/2 where a peer has one (plans to targets score latency, not km).
    """
    peers = np.asarray(chosen.peers, dtype=np.int64)
    cols = inputs.columns
    lats = np.concatenate([[inputs.ingress.lat], cols.lat[peers]])
    lons = np.concatenate([[inputs.ingress.lon], cols.lon[peers]])
    dist = pairwise_km(lats, lons)
    cost = dist
    if by_latency:
        # one_way_ms is affine in km: express each ingress leg's latency as km on that line.
        zero, per_km = float(one_way_ms(0.0)), float(one_way_ms(1.0) - one_way_ms(0.0))
        cost = dist.copy()
        cost[0, 1:] = cost[1:, 0] = np.maximum(cols.ingress_ms[peers] - zero, 0.0) / per_km
    points = unit_vectors(lats, lons)
    n = inputs.footprint.num_layers
    if len(peers) == 1:
        nodes = [0, 1]
    else:
        nodes = _feasible_break(inputs.caps, peers, cost, best_cycle(cost, points), n)
        if nodes is None:
            # No way round the shortest ring puts end-capable peers at the ends: pin them.
            first = 1 + chosen.peers.index(chosen.first)
            last = 1 + chosen.peers.index(chosen.last)
            nodes = cycle_with_fixed_ends(cost, first, last, points)
    stage_peers = [int(peers[v - 1]) for v in nodes[1:]]
    if not fits(inputs.caps, stage_peers, n):
        raise AssertionError(f"planner bug: stages {stage_peers} cannot hold {n} layers")
    walk = np.array(nodes + [0])
    return stage_peers, dist[walk[:-1], walk[1:]]


def _feasible_break(caps: Capacities, peers: np.ndarray, dist: np.ndarray, cycle: list[int],
                    num_layers: int) -> list[int] | None:
    """The shortest way to splice the ingress into the stages' ring with feasible ends.

    The tour's ends are the ingress's two neighbours. Cutting the ring edge (a, b) and going
    ingress -> b ... a -> ingress (or reversed) costs d(0,a) + d(0,b) − d(a,b) extra; every
    cut and direction whose first peer fits the embeddings, last peer the head, and total
    capacity the layers is a candidate. None when no cut works.
    """
    ring = np.asarray(cycle[1:], dtype=np.int64)
    before = np.roll(ring, 1)                       # ring edge (before[i], ring[i])
    extra = dist[0, before] + dist[0, ring] - dist[before, ring]
    who = peers[ring - 1]
    who_before = peers[before - 1]
    total = int(caps.middle[who].sum())
    can_first, can_last = caps.first >= 1, caps.last >= 1
    loss_first, loss_last = caps.middle - caps.first, caps.middle - caps.last
    # forward: ingress -> ring[i] ... before[i] -> ingress; backward: the mirror image.
    forward_ok = (can_first[who] & can_last[who_before]
                  & (total - loss_first[who] - loss_last[who_before] >= num_layers))
    backward_ok = (can_first[who_before] & can_last[who]
                   & (total - loss_first[who_before] - loss_last[who] >= num_layers))
    cost = np.minimum(np.where(forward_ok, extra, np.inf), np.where(backward_ok, extra, np.inf))
    i = int(np.argmin(cost))
    if not np.isfinite(cost[i]):
        return None
    order = np.concatenate([ring[i:], ring[:i]])
    if not forward_ok[i]:
        order = order[::-1]
    return [0] + [int(v) for v in order]


def _stage(inputs: PlanningInputs, p: int, start: int, end: int, first: bool,
           last: bool) -> Stage:
    peer = inputs.peers[p]
    source = peer.carbon_source
    return Stage(
        peer_id=peer.id,
        layer_start=start,
        layer_end=end,
        embeddings=first,
        lm_head=last,
        vram_required_gb=inputs.footprint.stage_bytes(end - start, first=first, last=last) / GB,
        vram_free_gb=float(peer.free_vram_gb),
        carbon_g_per_kwh=float(peer.carbon_g_per_kwh),
        carbon_source=getattr(source, "value", str(source)),
        lat=float(peer.lat),
        lon=float(peer.lon),
        gpu=peer.gpu,
    )
