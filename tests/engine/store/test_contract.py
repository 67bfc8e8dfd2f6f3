"""The store contract: every test runs against SQLite and against MongoDB (nx-27017)."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import replace
from typing import Any

import pytest

from engine.errors import InvalidInput
from engine.plan import ModelInfo, Plan, PlanMetrics, Stage
from engine.status import PeerStatus, StageStatus
from engine.store import (
    METRICS_RETENTION_S,
    PeerRecord,
    Store,
    StoreClosed,
)

NOW = time.time()
BERLIN = PeerRecord(
    peer_id="berlin-4090", lat=52.52, lon=13.405, gpu="RTX 4090", free_vram_gb=22.5,
    carbon_g_per_kwh=310.0, carbon_source="region", status=PeerStatus.LIVE, last_seen=NOW,
    metrics={"tokens_per_s": 41.2, "gpu": {"util": 0.8, "temps_c": [61, 63]}, "warm": True, "note": None},
)
OSLO = PeerRecord(peer_id="oslo.a100", lat=59.91, lon=10.75, gpu="A100", free_vram_gb=78.0,
                  carbon_g_per_kwh=None, carbon_source=None, last_seen=NOW)
SYDNEY = PeerRecord(peer_id="$sydney", lat=-33.87, lon=151.21, gpu=None, free_vram_gb=7,
                    carbon_g_per_kwh=520, carbon_source="country", status=PeerStatus.DEAD, last_seen=NOW - 60)


def _stage(peer: PeerRecord, start: int, end: int, num_layers: int) -> Stage:
    return Stage(peer_id=peer.peer_id, layer_start=start, layer_end=end, embeddings=start == 0,
                 lm_head=end == num_layers, vram_required_gb=1.5, vram_free_gb=peer.free_vram_gb,
                 carbon_g_per_kwh=peer.carbon_g_per_kwh or 400.0, carbon_source=peer.carbon_source or "default",
                 lat=peer.lat, lon=peer.lon, gpu=peer.gpu)


def make_plan(*peers: PeerRecord, num_layers: int = 30) -> dict[str, Any]:
    bounds = [round(i * num_layers / len(peers)) for i in range(len(peers) + 1)]
    stages = tuple(_stage(p, bounds[i], bounds[i + 1], num_layers) for i, p in enumerate(peers))
    return Plan(
        policy="carbon", weights={"carbon": 0.6, "distance": 0.3, "vram": 0.1},
        model=ModelInfo(name="smollm2-135m", num_layers=num_layers, param_count=134_515_008, quant="bf16"),
        ingress={"lat": 50.11, "lon": 8.68}, feasible=True, stages=stages,
        metrics=PlanMetrics(peers_used=len(peers), tour_km=1234.5, avg_carbon_g_per_kwh=300.0,
                            est_ms_per_token=85.0, g_co2_per_1k_tokens=2.5, vram_utilization=0.4),
    ).to_dict()


# ---- peers ------------------------------------------------------------------------------

def test_a_new_store_is_empty(store: Store) -> None:
    assert store.list_peers() == []
    assert store.get_peer("nobody") is None
    assert store.metrics_history("nobody") == []
    assert store.current_deployment() is None


def test_a_peer_reads_back_exactly_as_written(store: Store) -> None:
    for peer in (BERLIN, OSLO, SYDNEY):
        store.upsert_peer(peer)
    assert store.get_peer(BERLIN.peer_id) == BERLIN
    assert store.get_peer(OSLO.peer_id) == OSLO              # optional carbon fields stay None
    assert store.get_peer(SYDNEY.peer_id) == SYDNEY          # a "$" id is just an id
    assert isinstance(store.get_peer(SYDNEY.peer_id).free_vram_gb, float)


def test_upserting_the_same_peer_id_replaces_it(store: Store) -> None:
    store.upsert_peer(BERLIN)
    moved = replace(BERLIN, free_vram_gb=3.0, metrics={"tokens_per_s": 9.0}, last_seen=NOW + 5)
    store.upsert_peer(moved)
    assert store.list_peers() == [moved]
    assert store.get_peer(BERLIN.peer_id) == moved


def test_list_peers_is_sorted_and_filters_by_status(store: Store) -> None:
    for peer in (SYDNEY, OSLO, BERLIN):
        store.upsert_peer(peer)
    assert [p.peer_id for p in store.list_peers()] == ["$sydney", "berlin-4090", "oslo.a100"]
    assert [p.peer_id for p in store.list_peers(status=PeerStatus.LIVE)] == ["berlin-4090", "oslo.a100"]
    assert store.list_peers(status=PeerStatus.DEAD) == [SYDNEY]


def test_mark_peer_changes_only_the_status(store: Store) -> None:
    store.upsert_peer(BERLIN)
    store.mark_peer(BERLIN.peer_id, PeerStatus.DEAD)
    assert store.get_peer(BERLIN.peer_id) == replace(BERLIN, status=PeerStatus.DEAD)
    assert store.list_peers(status=PeerStatus.LIVE) == []
    store.mark_peer(BERLIN.peer_id, PeerStatus.LIVE)
    assert store.get_peer(BERLIN.peer_id) == BERLIN


def test_a_live_peer_is_stored_as_live_and_the_old_word_alive_still_reads(store: Store) -> None:
    store.upsert_peer(replace(BERLIN, status="alive"))            # what stores before 2026-12 said
    assert store.get_peer(BERLIN.peer_id).status == "live"
    store.mark_peer(BERLIN.peer_id, PeerStatus.DEAD)
    store.mark_peer(BERLIN.peer_id, "alive")
    assert [p.peer_id for p in store.list_peers(status="alive")] == [BERLIN.peer_id]
    assert [p.peer_id for p in store.list_peers(status=PeerStatus.LIVE)] == [BERLIN.peer_id]
    with pytest.raises(InvalidInput) as err:
        store.mark_peer(BERLIN.peer_id, "ready")                  # the store keeps only live / dead
    assert (err.value.field, err.value.value) == ("status", "ready")


def test_marking_an_unknown_peer_is_rejected(store: Store) -> None:
    with pytest.raises(InvalidInput) as err:
        store.mark_peer("ghost", PeerStatus.DEAD)
    assert (err.value.field, err.value.value) == ("peer_id", "ghost")
    assert store.list_peers() == []


# ---- metrics history --------------------------------------------------------------------

def test_metrics_history_is_per_peer_oldest_first_and_honours_since(store: Store) -> None:
    now = time.time()
    store.record_metrics("a", now - 30, {"tokens_per_s": 3.0})
    store.record_metrics("a", now - 90, {"tokens_per_s": 1.0})
    store.record_metrics("a", now - 60, {"tokens_per_s": 2.0, "nested": {"ok": True}})
    store.record_metrics("b", now - 60, {"tokens_per_s": 99.0})
    history = store.metrics_history("a")
    assert [s.metrics["tokens_per_s"] for s in history] == [1.0, 2.0, 3.0]
    assert [s.at for s in history] == [now - 90, now - 60, now - 30]
    assert history[1].metrics == {"tokens_per_s": 2.0, "nested": {"ok": True}}
    assert {s.peer_id for s in history} == {"a"}
    assert [s.at for s in store.metrics_history("a", since=now - 60)] == [now - 60, now - 30]
    assert [s.metrics["tokens_per_s"] for s in store.metrics_history("b")] == [99.0]


def test_metrics_older_than_24_hours_expire(store: Store, backend) -> None:
    now = time.time()
    store.record_metrics("a", now - METRICS_RETENTION_S - 3600, {"tokens_per_s": 1.0})  # 25 h ago
    store.record_metrics("a", now - 10, {"tokens_per_s": 2.0})
    assert [s.metrics for s in store.metrics_history("a")] == [{"tokens_per_s": 2.0}]
    assert [s.metrics for s in store.metrics_history("a", since=0.0)] == [{"tokens_per_s": 2.0}]
    assert backend.raw_metrics_count("a") == 1      # the old sample is deleted, not just hidden


# ---- deployments ------------------------------------------------------------------------

def test_a_saved_deployment_becomes_current_with_pending_stages(store: Store) -> None:
    plan = make_plan(BERLIN, OSLO)
    before = time.time()
    dep_id = store.save_deployment(plan)
    current = store.current_deployment()
    assert current is not None and current.deployment_id == dep_id and current.active
    assert current.plan == plan
    assert current.to_plan() == Plan.from_dict(plan)
    assert current.stage_status == {BERLIN.peer_id: StageStatus.PENDING, OSLO.peer_id: StageStatus.PENDING}
    assert before <= current.created_at == current.updated_at <= time.time()
    assert store.get_deployment(dep_id) == current


def test_update_stage_status_touches_one_stage(store: Store) -> None:
    dep_id = store.save_deployment(make_plan(BERLIN, OSLO))
    created_at = store.current_deployment().created_at
    store.update_stage_status(dep_id, OSLO.peer_id, "ready")
    current = store.current_deployment()
    assert current.stage_status == {BERLIN.peer_id: StageStatus.PENDING, OSLO.peer_id: "ready"}
    assert current.updated_at >= created_at and current.created_at == created_at


def test_a_new_deployment_deactivates_the_previous_one(store: Store) -> None:
    old_id = store.save_deployment(make_plan(BERLIN, OSLO))
    new_id = store.save_deployment(make_plan(SYDNEY))
    assert new_id != old_id
    assert store.current_deployment().deployment_id == new_id
    assert store.get_deployment(old_id).active is False
    assert store.get_deployment(new_id).active is True
    store.update_stage_status(old_id, BERLIN.peer_id, StageStatus.LOST)   # history stays editable
    assert store.current_deployment().deployment_id == new_id


def test_the_last_of_quickly_saved_deployments_is_the_only_active_one(store: Store) -> None:
    ids = [store.save_deployment(make_plan(BERLIN)) for _ in range(6)]
    assert store.current_deployment().deployment_id == ids[-1]
    assert [store.get_deployment(i).active for i in ids] == [False] * 5 + [True]
    created = [store.get_deployment(i).created_at for i in ids]
    assert created == sorted(created) and len(set(created)) == len(created)


def test_an_unknown_stage_status_is_rejected(store: Store) -> None:
    dep_id = store.save_deployment(make_plan(BERLIN))
    with pytest.raises(InvalidInput) as err:
        store.update_stage_status(dep_id, BERLIN.peer_id, "stopped")
    assert (err.value.field, err.value.value) == ("status", "stopped")
    assert store.current_deployment().stage_status == {BERLIN.peer_id: StageStatus.PENDING}


def test_stage_status_of_unknown_deployment_or_peer_is_rejected(store: Store) -> None:
    dep_id = store.save_deployment(make_plan(BERLIN))
    with pytest.raises(InvalidInput) as err:
        store.update_stage_status("no-such-deployment", BERLIN.peer_id, "ready")
    assert (err.value.field, err.value.value) == ("deployment_id", "no-such-deployment")
    with pytest.raises(InvalidInput) as err:
        store.update_stage_status(dep_id, OSLO.peer_id, "ready")
    assert (err.value.field, err.value.value) == ("peer_id", OSLO.peer_id)
    assert store.current_deployment().stage_status == {BERLIN.peer_id: StageStatus.PENDING}


# ---- restart recovery -------------------------------------------------------------------

def test_reopening_the_store_recovers_peers_deployment_and_metrics(backend) -> None:
    first = backend.open()
    for peer in (BERLIN, OSLO, SYDNEY):
        first.upsert_peer(peer)
    first.mark_peer(OSLO.peer_id, PeerStatus.DEAD)
    first.save_deployment(make_plan(OSLO))
    dep_id = first.save_deployment(make_plan(BERLIN, SYDNEY))
    first.update_stage_status(dep_id, SYDNEY.peer_id, "ready")
    first.record_metrics(BERLIN.peer_id, time.time() - 5, {"tokens_per_s": 40.0})
    peers, deployment = first.list_peers(), first.current_deployment()
    first.close()

    second = backend.open()
    try:
        assert second.list_peers() == peers
        assert second.get_peer(OSLO.peer_id).status == PeerStatus.DEAD
        assert second.current_deployment() == deployment
        assert deployment.deployment_id == dep_id
        assert [s.metrics for s in second.metrics_history(BERLIN.peer_id)] == [{"tokens_per_s": 40.0}]
    finally:
        second.close()


def test_a_closed_store_refuses_calls(backend) -> None:
    opened = backend.open()
    opened.close()
    opened.close()                                   # idempotent
    with pytest.raises(StoreClosed):
        opened.list_peers()


# ---- bad input: rejected with field and value, nothing stored is lost -------------------

NAN = float("nan")
BAD_PLAN_LAYERS = make_plan(BERLIN, OSLO)
BAD_PLAN_LAYERS["stages"][1]["layer_start"] = 16     # leaves layer 15 without a peer
INFEASIBLE = {**make_plan(BERLIN), "feasible": False, "stages": [], "shortfall_gb": 3.0, "shortfall_layers": 2}

BAD_CALLS = [
    ("nan latitude", lambda s: s.upsert_peer(replace(BERLIN, lat=NAN)), "peer.lat", NAN),
    ("latitude out of range", lambda s: s.upsert_peer(replace(BERLIN, lat=91.0)), "peer.lat", 91.0),
    ("longitude out of range", lambda s: s.upsert_peer(replace(BERLIN, lon=-200)), "peer.lon", -200),
    ("empty peer id", lambda s: s.upsert_peer(replace(BERLIN, peer_id="")), "peer.peer_id", ""),
    ("blank peer id", lambda s: s.upsert_peer(replace(BERLIN, peer_id="  ")), "peer.peer_id", "  "),
    ("negative vram", lambda s: s.upsert_peer(replace(BERLIN, free_vram_gb=-1.0)), "peer.free_vram_gb", -1.0),
    ("unknown status", lambda s: s.upsert_peer(replace(BERLIN, status="zombie")), "peer.status", "zombie"),
    ("unknown carbon source", lambda s: s.upsert_peer(replace(BERLIN, carbon_source="guess")),
     "peer.carbon_source", "guess"),
    ("nan in metrics", lambda s: s.upsert_peer(replace(BERLIN, metrics={"x": NAN})), "peer.metrics", {"x": NAN}),
    ("not a record", lambda s: s.upsert_peer({"peer_id": "x"}), "peer", {"peer_id": "x"}),
    ("mark with bad status", lambda s: s.mark_peer(BERLIN.peer_id, "zombie"), "status", "zombie"),
    ("list with bad status", lambda s: s.list_peers(status="zombie"), "status", "zombie"),
    ("metrics for empty peer id", lambda s: s.record_metrics("", NOW, {}), "peer_id", ""),
    ("metrics at nan", lambda s: s.record_metrics("a", NAN, {}), "at", NAN),
    ("metrics not an object", lambda s: s.record_metrics("a", NOW, [1, 2]), "metrics", [1, 2]),
    ("metrics with int keys", lambda s: s.record_metrics("a", NOW, {1: 2.0}), "metrics", {1: 2.0}),
    ("history since nan", lambda s: s.metrics_history("a", since=NAN), "since", NAN),
    ("plan not an object", lambda s: s.save_deployment("plan.json"), "plan", "str"),
    ("plan with wrong schema", lambda s: s.save_deployment({**make_plan(BERLIN), "schema": "v0"}), "schema", "v0"),
    ("plan with a layer gap", lambda s: s.save_deployment(BAD_PLAN_LAYERS), "stages[1].layer_start", 16),
    ("infeasible plan", lambda s: s.save_deployment(INFEASIBLE), "plan.feasible", False),
    ("stage status empty", lambda s: s.update_stage_status(s.current_deployment().deployment_id, BERLIN.peer_id, ""),
     "status", ""),
]


@pytest.mark.parametrize(("call", "field", "value"), [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_input_is_rejected_and_nothing_stored_is_lost(store: Store, call, field: str, value: object) -> None:
    store.upsert_peer(BERLIN)
    store.upsert_peer(OSLO)
    store.record_metrics(BERLIN.peer_id, time.time(), {"tokens_per_s": 1.0})
    dep_id = store.save_deployment(make_plan(BERLIN, OSLO))
    store.update_stage_status(dep_id, BERLIN.peer_id, "ready")
    peers, deployment = store.list_peers(), store.current_deployment()

    with pytest.raises(InvalidInput) as err:
        call(store)
    assert err.value.field == field
    if isinstance(value, float) and math.isnan(value):
        assert isinstance(err.value.value, float) and math.isnan(err.value.value)
    else:
        assert err.value.value == value
    assert field in str(err.value)

    assert store.list_peers() == peers
    assert store.current_deployment() == deployment
    assert [s.metrics for s in store.metrics_history(BERLIN.peer_id)] == [{"tokens_per_s": 1.0}]


# ---- threads ----------------------------------------------------------------------------

def test_a_store_is_shared_safely_across_threads(store: Store) -> None:
    errors: list[BaseException] = []

    def work(thread_no: int) -> None:
        try:
            for i in range(15):
                peer_id = f"t{thread_no}-p{i}"
                store.upsert_peer(replace(OSLO, peer_id=peer_id, free_vram_gb=float(i)))
                store.record_metrics(peer_id, time.time(), {"i": i})
                store.get_peer(peer_id)
        except BaseException as exc:  # noqa: BLE001 - reported on the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert len(store.list_peers()) == 60
    assert [s.metrics for s in store.metrics_history("t3-p14")] == [{"i": 14}]
