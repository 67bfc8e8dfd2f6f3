"""The coordinator: admits runners that prove the join secret (engine.protocol.auth), watches their
heartbeats, deploys plans and recovers when a runner dies. One asyncio loop owns all of its state.

Routing follows the plan's tour (engine.coordinator.tour): the ingress sends each step to stage 1
with the addresses of the later stages; each runner sends its output straight to the next one, and
the last stage sends the token back here. Per token the coordinator sends one frame and receives
one; hidden states never pass through it. Each deploy message assigns a runner the only addresses it
may send to (the later stages and this ingress). A lost runner is still noticed here (its
connection, its beats, or the previous stage reporting it unreachable), and the request is retried
from its prompt after a re-plan.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from engine.carbon.resolver import CarbonResolver
from engine.carbon_values import CarbonSource
from engine.coordinator import registry as reg
from engine.coordinator.deployment import FAILED, LOADING, LOST, PENDING, READY, Deployment, ProgressCallback
from engine.coordinator.links import FORWARD_TIMEOUT_S, PeerLink, PeerLost
from engine.coordinator.measured import Measurements, ingress_key_of
from engine.coordinator.plausible import VramSanity
from engine.coordinator.registry import PeerState, Registry
from engine.coordinator.tour import FrameCounts, StepTrace, TourSteps
from engine.errors import InvalidInput
from engine.plan import Plan
from engine.planning.types import Ingress, Peer
from engine.protocol.auth import PEER_KEYS_FILE, PeerKeys, Refusal, SigningKey, coordinator_handshake
from engine.protocol.messages import MAX_HEADER_BYTES, RUNNER_TO_COORDINATOR, validate
from engine.status import PeerStatus
from engine.store.base import PeerRecord as StoredPeer
from engine.store.base import Store
from engine.transport.base import Channel, ConnectionClosed, Node
from engine.transport.frames import FrameError, FrameLimits, tensor_to_frame
from engine.transport.wan import DEFAULT_BANDWIDTH_MBPS, WanEmulation

log = logging.getLogger("prismn.coordinator")

JOIN_TIMEOUT_S = 10.0
MAX_BAD_FRAMES = 50              # a runner sending this many bad frames is cut off
# Until it has joined with the secret, a connection may send one small header and no payload: a
# stranger must not make the coordinator read (and hold) a 256 MiB tensor.
JOIN_LIMITS = FrameLimits(max_header_bytes=MAX_HEADER_BYTES, max_payload_bytes=0)
STORE_EVERY_S = 2.0              # heartbeats reach the store (peer rows, metrics history) this often
MONITOR_S = 0.1                  # how often silent runners are looked for: death is noticed this late
MODELS_FILE = "coordinator_models.json"


class Coordinator:
    def __init__(self, node: Node, store: Store, join_secret: str, *, heartbeat_s: float = 1.0,
                 resolver: CarbonResolver | None = None, state_dir: Path | None = None,
                 signing_key: SigningKey | None = None) -> None:
        if not join_secret:
            raise InvalidInput("join_secret", join_secret, "expected a non-empty secret")
        self.node = node
        self.store = store
        self.heartbeat_s = heartbeat_s
        self.registry = Registry(heartbeat_s)
        self.links: dict[str, PeerLink] = {}
        self.deployment: Deployment | None = None
        self.pending_deployment: Deployment | None = None   # a migration's next plan, loading beside
        # deployment id -> model source: the store keeps plans, this file what runners load them from
        self._models_path = state_dir / MODELS_FILE if state_dir is not None else None
        self.models: dict[str, str] = _read_models(self._models_path)
        self.peer_rows: list[dict[str, Any]] = []        # immutable snapshot for other threads
        self._join_secret = join_secret
        self.signing_key = signing_key or SigningKey.generate()      # proves this coordinator to runners
        self.vram_sanity = VramSanity()          # memory figures bounded by what a device holds
        self.peer_keys = PeerKeys(state_dir / PEER_KEYS_FILE if state_dir is not None else None)
        self._resolver = resolver or CarbonResolver()
        self._unsaved: dict[str, tuple[PeerState, dict[str, Any], float]] = {}   # beats not yet stored
        self._flushing: asyncio.Task[None] | None = None
        self._rows_stale = False
        self._tasks: list[asyncio.Task[None]] = []
        self._conn_tasks: set[asyncio.Task[None]] = set()
        self.tours = TourSteps()
        self.frames = FrameCounts()
        self.measured = Measurements()
        self.ingress_address = ""          # what runners name as reply_to: set once at start

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self.ingress_address = self.node.address
        self._restore()
        self._tasks = [asyncio.create_task(self._accept_loop()), asyncio.create_task(self._monitor_loop())]

    async def close(self) -> None:
        for task in [*self._tasks, *self._conn_tasks]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._conn_tasks, return_exceptions=True)
        for link in list(self.links.values()):
            link.fail("coordinator stopped")
            await _quiet_close(link.channel)
        await self.node.close()

    def _restore(self) -> None:
        """Peers and the current deployment from the store; peers stay dead until they rejoin."""
        for stored in self.store.list_peers():
            metrics = stored.metrics
            self.registry.restore(PeerState(
                id=stored.peer_id, name=str(metrics.get("name") or stored.peer_id), lat=stored.lat,
                lon=stored.lon, gpu=stored.gpu, total_vram_gb=float(metrics.get("total_vram_gb") or 0.0),
                free_vram_gb=stored.free_vram_gb, utilization_pct=metrics.get("utilization_pct"),
                power_w=metrics.get("power_w"), carbon_g_per_kwh=stored.carbon_g_per_kwh or 0.0,
                carbon_source=CarbonSource(stored.carbon_source or CarbonSource.DEFAULT.value),
                tflops=metrics.get("tflops"), status=reg.DEAD, last_beat_s=0.0))
            if stored.status != PeerStatus.DEAD:
                self._store("mark_peer", stored.peer_id, PeerStatus.DEAD)
        record = self.store.current_deployment()
        if record is not None:
            plan = record.to_plan()
            model = self.models.get(record.deployment_id, plan.model.name)
            self.deployment = Deployment(record.deployment_id, plan, model)
            # Runners rejoin holding their stages; until then every stage is pending again.
            for peer_id in self.deployment.status:
                self.deployment.status[peer_id] = PENDING
        self._publish()

    # ---- connections ----------------------------------------------------------------------

    async def _accept_loop(self) -> None:
        while True:
            try:
                channel = await self.node.accept()
            except ConnectionClosed:
                return
            except Exception:
                log.exception("accept failed")
                await asyncio.sleep(0.1)
                continue
            task = asyncio.create_task(self._serve(channel))
            self._conn_tasks.add(task)
            task.add_done_callback(self._conn_tasks.discard)

    async def _serve(self, channel: Channel) -> None:
        peer_id = None
        try:
            peer_id = await self._admit(channel)
            if peer_id is not None:
                await self._read_loop(peer_id, channel)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("connection from %s failed", channel.peer)
        finally:
            link = self.links.get(peer_id) if peer_id else None
            if link is not None and link.channel is channel:
                self._peer_lost(peer_id, "connection closed")
            await _quiet_close(channel)

    async def _admit(self, channel: Channel) -> str | None:
        """The join handshake (engine.protocol.auth): proof of the join secret over fresh nonces,
        and a runner key that owns its peer id; returns the peer id or None."""
        joined_limits, channel.limits = channel.limits, JOIN_LIMITS
        try:
            msg = await coordinator_handshake(channel, self._join_secret, self.signing_key, self.peer_keys,
                                              JOIN_TIMEOUT_S)
        except Refusal as refusal:
            await _refuse(channel, str(refusal))
            return None
        channel.limits = joined_limits
        peer_id = msg["peer_id"]
        msg = self.vram_sanity.check(peer_id, msg)
        old = self.links.pop(peer_id, None)
        if old is not None:           # the same runner reconnecting: its old connection is finished
            old.fail("replaced by a new connection")
            await _quiet_close(old.channel)
        carbon = await asyncio.to_thread(self._resolver.resolve, msg["lat"], msg["lon"], msg["carbon_g_per_kwh"])
        record = self.registry.join(msg, carbon, asyncio.get_running_loop().time())
        self.links[peer_id] = PeerLink(peer_id, channel, self.frames)
        await channel.send({"type": "welcome", "peer_id": peer_id, "heartbeat_s": self.heartbeat_s})
        self._save_peer(record, msg)
        log.info("joined: %s at (%.2f, %.2f), %.2f GB free", peer_id, record.lat, record.lon, record.free_vram_gb)
        self._on_rejoin(peer_id, msg.get("loaded"))
        self._publish()
        return peer_id

    async def _read_loop(self, peer_id: str, channel: Channel) -> None:
        bad_frames = 0
        while True:
            try:
                header, payload = await channel.recv()
                msg = validate(header, payload, RUNNER_TO_COORDINATOR - {"join_hello", "join"})
            except FrameError as exc:
                if not exc.recoverable:
                    raise ConnectionClosed(f"unrecoverable frame: {exc}") from None
                bad_frames += 1
                await _reply_error(channel, str(exc))
            except InvalidInput as exc:
                bad_frames += 1
                await _reply_error(channel, str(exc))
            else:
                if self.links.get(peer_id) is None or self.links[peer_id].channel is not channel:
                    return                  # replaced or declared dead: stop listening to this one
                self._dispatch(peer_id, msg, payload)
                continue
            if bad_frames >= MAX_BAD_FRAMES:
                log.warning("dropping %s after %d bad frames", peer_id, bad_frames)
                return

    def _dispatch(self, peer_id: str, msg: dict[str, Any], payload: bytes) -> None:
        kind = msg["type"]
        dep = self.deployment
        self.frames.count("received", msg)
        if kind == "result":
            self.tours.on_result(peer_id, msg, payload)
            return
        if kind == "error":
            self._on_step_error(peer_id, msg)
            return
        if kind == "ping":
            if "request_id" in msg:
                asyncio.get_running_loop().create_task(_quiet_send(self.links[peer_id], {
                    "type": "pong", "request_id": msg["request_id"]}))
            return
        if kind == "pong":
            return
        if kind == "heartbeat":
            joined = self.registry.get(peer_id)
            msg = self.vram_sanity.check(peer_id, msg, joined.total_vram_gb if joined is not None else None)
            record = self.registry.beat(peer_id, msg, asyncio.get_running_loop().time())
            if record is not None:
                # Stored and published by the monitor loop, a batch at a time: per beat, a store write
                # and a rebuild of every row cost O(peers^2) a second, and 1,000 runners fell behind.
                self._unsaved[peer_id] = (record, msg, time.time())
                self._rows_stale = True
            return
        elif kind == "failed":
            self.links[peer_id].on_result(msg, payload)
        elif dep is None or msg["deployment_id"] != dep.id:
            pending = self.pending_deployment
            if pending is not None and msg["deployment_id"] == pending.id:
                from engine.coordinator.replacement import pending_progress
                if kind == "ready":
                    self._record_timing(pending, peer_id, msg)
                pending_progress(pending, peer_id, msg)
            return                          # progress of a deployment since replaced
        elif kind == "load_progress":
            total = msg["total_bytes"]
            dep.set(peer_id, LOADING, msg["loaded_bytes"] / total if total else 0.0)
            self.registry.set_status(peer_id, reg.LOADING)
        elif kind == "ready":
            self._record_timing(dep, peer_id, msg)
            self._stage_status(dep, peer_id, READY)
        elif kind == "measured_rtt":
            order = [s.peer_id for s in dep.plan.stages]
            if peer_id in order and order.index(peer_id) + 1 < len(order):
                self.measured.record_rtt(peer_id, order[order.index(peer_id) + 1], msg["next_hop_rtt_ms"])
            ingress = Ingress(dep.plan.ingress["lat"], dep.plan.ingress["lon"])
            self.measured.record_rtt(peer_id, ingress_key_of(ingress), msg["ingress_rtt_ms"])
        elif kind == "load_failed":
            dep.errors[peer_id] = msg["error"]
            self._stage_status(dep, peer_id, FAILED)
        self._publish()

    def _record_timing(self, dep: Deployment, peer_id: str, msg: dict[str, Any]) -> None:
        """A runner's own timing of the stage it just loaded (engine.runner.calibrate)."""
        stage = next((s for s in dep.plan.stages if s.peer_id == peer_id), None)
        if stage is not None:
            self.measured.record_stage(peer_id, dep.plan.model.name, stage.num_layers, stage.lm_head, msg)

    # ---- liveness -------------------------------------------------------------------------

    async def _monitor_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_ping_s = next_flush_s = loop.time()
        tick_s = min(MONITOR_S, self.heartbeat_s / 4)
        allowance_s = 0.0
        while True:
            woke_due_s = loop.time() + tick_s
            await asyncio.sleep(tick_s)
            # When this loop itself stalled (a join storm, a busy machine), the beats it missed may
            # still wait unread in its sockets: give every peer that much longer, decaying tick by
            # tick, so a slow coordinator does not declare its runners dead (a dead one still is,
            # only later by the stall).
            allowance_s = max(loop.time() - woke_due_s, allowance_s - tick_s, 0.0)
            for peer_id in self.registry.expire(loop.time() - allowance_s):
                self._peer_lost(peer_id, f"missed {reg.MISSED_BEATS} heartbeats")
            if self._rows_stale:
                self._publish()
            if loop.time() >= next_flush_s and self._unsaved and (self._flushing is None or self._flushing.done()):
                next_flush_s = loop.time() + STORE_EVERY_S
                batch, self._unsaved = self._unsaved, {}
                self._flushing = loop.create_task(asyncio.to_thread(self._save_beats, batch))
            if loop.time() >= next_ping_s:
                next_ping_s = loop.time() + self.heartbeat_s
                for link in list(self.links.values()):
                    loop.create_task(_ping(link))

    def _save_beats(self, batch: dict[str, tuple[PeerState, dict[str, Any], float]]) -> None:
        """The latest beat of each peer in `batch`: its row and a metrics sample (a worker thread)."""
        for peer_id, (record, msg, at_s) in batch.items():
            self._save_peer(record, msg)
            self._store("record_metrics", peer_id, at_s, _metrics_of(msg))

    def _peer_lost(self, peer_id: str, reason: str) -> None:
        log.warning("lost %s: %s", peer_id, reason)       # the soak times detection by this line
        self._unsaved.pop(peer_id, None)
        self.registry.mark_dead(peer_id)
        link = self.links.pop(peer_id, None)
        if link is not None:
            link.fail(reason)
            asyncio.get_running_loop().create_task(_quiet_close(link.channel))
        self._store("mark_peer", peer_id, PeerStatus.DEAD)
        self.tours.peer_lost(PeerLost(peer_id, reason, link))
        dep = self.deployment
        if dep is not None and dep.status.get(peer_id) not in (None, LOST):
            self._stage_status(dep, peer_id, LOST)
        self._publish()

    def _on_rejoin(self, peer_id: str, loaded: dict[str, Any] | None) -> None:
        """A runner of the current deployment came back: keep its stage, or have it load it again."""
        dep = self.deployment
        if dep is None or peer_id not in dep.status:
            return
        loop = asyncio.get_running_loop()
        if dep.holds(peer_id, loaded):
            self._stage_status(dep, peer_id, READY)
        elif dep.status[peer_id] in (PENDING, LOST, READY):
            self._stage_status(dep, peer_id, LOADING)
            loop.create_task(self._send_stage(dep, peer_id))
        # Its address (or this ingress's) may be new: every stage gets its routes again.
        for other in dep.status:
            if other in self.links:
                loop.create_task(_quiet_send(self.links[other], {
                    "type": "routes", "deployment_id": dep.id, **self._routes(dep, other)}))

    # ---- deployments ----------------------------------------------------------------------

    async def deploy_once(self, plan: Plan, model: str, on_progress: ProgressCallback | None,
                          timeout_s: float) -> Deployment:
        """Send every runner its stage and wait until all are ready (PeerLost if one dies)."""
        for stage in plan.stages:
            if not self.registry.is_alive(stage.peer_id) or stage.peer_id not in self.links:
                raise PeerLost(stage.peer_id, "not connected")
        deployment_id = self.store.save_deployment(plan.to_dict())
        self.models = {deployment_id: model}          # only the current deployment is ever restored
        if self._models_path is not None:
            self._models_path.write_text(json.dumps(self.models))
        dep = Deployment(deployment_id, plan, model, on_progress=on_progress)
        self.deployment = dep
        for peer_id in dep.status:
            self._stage_status(dep, peer_id, PENDING)
        for peer_id in dep.status:
            await self._send_stage(dep, peer_id)
        try:
            await dep.wait_ready(timeout_s)
        except TimeoutError:
            waiting = sorted(p for p, status in dep.status.items() if status != READY)
            raise PeerLost(waiting[0], f"stage not ready within {timeout_s:g} s") from None
        return dep

    async def _send_stage(self, dep: Deployment, peer_id: str) -> None:
        link = self.links.get(peer_id)
        if link is None:
            self._stage_status(dep, peer_id, LOST)
            return
        self.registry.set_status(peer_id, reg.LOADING)
        try:
            await link.send({**dep.stage_message(peer_id), **self._routes(dep, peer_id)})
        except PeerLost as lost:
            self._peer_lost(peer_id, lost.reason)

    def _stage_status(self, dep: Deployment, peer_id: str, status: str) -> None:
        dep.set(peer_id, status)
        self._store("update_stage_status", dep.id, peer_id, status)
        if status == READY:
            self.registry.set_status(peer_id, reg.READY)

    def _routes(self, dep: Deployment, peer_id: str) -> dict[str, Any]:
        """The places `peer_id` may send to: the later stages of the tour, then this ingress; and the
        deployment's access token, so the next stage accepts what this one forwards."""
        order = [s.peer_id for s in dep.plan.stages]
        later = []
        for other in order[order.index(peer_id) + 1:]:
            record = self.registry.get(other)
            if record is not None and record.address:
                later.append({"address": record.address, "lat": record.lat, "lon": record.lon})
        return {"routes": later, "reply_to": {"address": self.ingress_address, "lat": dep.plan.ingress["lat"],
                                              "lon": dep.plan.ingress["lon"]}, "token": dep.token}

    async def step(self, dep: Deployment, session_id: str, position: int, tensor: Any,
                   sampling: dict[str, Any] | None = None) -> tuple[Any, StepTrace]:
        """One step along the tour: in at stage 1, out of the last stage; (token tensor, trace)."""
        peers = tuple(s.peer_id for s in dep.plan.stages)
        first = self.link(peers[0])
        route = []
        for peer_id in peers[1:]:
            self.link(peer_id)                                   # PeerLost when not connected
            record = self.registry.get(peer_id)
            if record is None or not record.address:
                raise PeerLost(peer_id, "it reported no address other stages can reach")
            route.append(record.address)
        request_id, result = self.tours.open(peers)
        try:
            header, payload = tensor_to_frame("forward", tensor, request_id=request_id, session_id=session_id,
                                              position=position, route=route, reply_to=self.ingress_address,
                                              want="token", sampling=sampling)
            await asyncio.sleep(self._ingress_delay_s(dep, peers[0], len(payload)))
            await first.send(header, payload)
            return await asyncio.wait_for(result, FORWARD_TIMEOUT_S)
        except TimeoutError:
            raise PeerLost(peers[0], f"no token back from the tour in {FORWARD_TIMEOUT_S:g} s", first) from None
        finally:
            self.tours.close(request_id)

    def _ingress_delay_s(self, dep: Deployment, peer_id: str, num_bytes: int) -> float:
        """The emulated WAN leg ingress -> stage 1, when that runner emulates one (runners delay the rest)."""
        record = self.registry.get(peer_id)
        if record is None or not record.emulated_wan:
            return 0.0
        wan = WanEmulation((dep.plan.ingress["lat"], dep.plan.ingress["lon"]),
                           record.wan_bandwidth_mbps or DEFAULT_BANDWIDTH_MBPS)
        return wan.delay_s((record.lat, record.lon), num_bytes + 256)

    def _on_step_error(self, peer_id: str, msg: dict[str, Any]) -> None:
        unreachable = msg.get("unreachable")
        lost = None
        if unreachable:
            lost = next((p.id for p in self.registry.all() if p.address == unreachable), None)
            if unreachable == self.ingress_address:
                lost = peer_id                 # it cannot reach us: as good as lost
        if "request_id" not in msg:
            log.warning("%s reports: %s", peer_id, msg["reason"])
            return
        self.tours.on_error(peer_id, msg, lost, self.links.get(lost) if lost else None)

    def peers_for(self, model: str | None = None, ingress: Ingress | None = None) -> list[Peer]:
        """Live peers as the planner takes them, with what they measured for `model` and `ingress`."""
        return self.measured.peers_for(self.registry.alive(), model, ingress)

    def live_peers(self) -> list[PeerState]:
        return self.registry.alive()

    def link(self, peer_id: str) -> PeerLink:
        link = self.links.get(peer_id)
        if link is None or not self.registry.is_alive(peer_id):
            raise PeerLost(peer_id, "not connected")
        return link

    def drop_peer(self, lost: PeerLost) -> None:
        """Treat a runner as dead now (a failed send, a request timeout); it may rejoin later.

        Nothing happens when the runner has rejoined on a new connection since `lost` was raised.
        """
        current = self.links.get(lost.peer_id)
        if lost.link is not None and current is not lost.link:
            return
        if current is not None or self.registry.is_alive(lost.peer_id):
            self._peer_lost(lost.peer_id, lost.reason)

    # ---- store and snapshots --------------------------------------------------------------

    def _save_peer(self, record: PeerState, msg: dict[str, Any]) -> None:
        self._store("upsert_peer", StoredPeer(
            peer_id=record.id, lat=record.lat, lon=record.lon, gpu=record.gpu,
            free_vram_gb=record.free_vram_gb, carbon_g_per_kwh=record.carbon_g_per_kwh,
            carbon_source=record.carbon_source.value, status=PeerStatus.LIVE, last_seen=time.time(),
            metrics={**_metrics_of(msg), "name": record.name, "tflops": record.tflops}))

    def _store(self, method: str, *args: Any) -> None:
        """Store writes must not take the coordinator down (a busy MongoDB, a full disk): log them."""
        try:
            getattr(self.store, method)(*args)
        except Exception:
            log.exception("store.%s failed", method)

    def _publish(self) -> None:
        self._rows_stale = False
        self.peer_rows = [p.summary() for p in self.registry.all()]


def _read_models(path: Path | None) -> dict[str, str]:
    if path is None or not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        log.warning("ignoring unreadable %s", path)
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def _metrics_of(msg: dict[str, Any]) -> dict[str, Any]:
    return {k: msg[k] for k in ("gpu", "total_vram_gb", "free_vram_gb", "utilization_pct", "power_w")}


def new_session_id() -> str:
    return uuid.uuid4().hex[:24]


async def _quiet_send(link: PeerLink, header: dict[str, Any]) -> None:
    try:
        await link.send(header)
    except PeerLost:
        pass


async def _ping(link: PeerLink) -> None:
    try:
        await link.send({"type": "ping"})
    except PeerLost:
        pass            # the read loop or the monitor notices the loss


async def _refuse(channel: Channel, reason: str) -> None:
    try:
        await channel.send({"type": "refused", "reason": reason[:1000]})
    except (ConnectionClosed, FrameError, OSError):
        pass


async def _reply_error(channel: Channel, reason: str) -> None:
    try:
        await channel.send({"type": "error", "reason": reason[:1000]})
    except (ConnectionClosed, FrameError, OSError):
        pass


async def _quiet_close(channel: Channel) -> None:
    try:
        await asyncio.wait_for(channel.close(), 2.0)
    except Exception:
        pass
