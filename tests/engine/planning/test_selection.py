import dataclasses

import numpy as np
from hypothesis import given, settings

from engine import GB
from engine.planning.inputs import peer_columns
from engine.planning.scoring import policy_order
from engine.planning.selection import Selection, Shortfall, layer_capacities, select_peers
from engine.planning.types import Policy, Weights
from tests.engine.planning.factories import (
    INGRESS,
    best_arrangement_layers,
    footprint,
    footprints,
    max_layers,
    peer,
    swarms,
)


@settings(max_examples=60, deadline=None)
@given(footprints(), swarms(max_peers=6))
def test_capacities_per_role_match_stage_bytes(fp, peers):
    caps = layer_capacities(fp, np.array([p.free_vram_gb for p in peers], dtype=np.float64))
    for i, p in enumerate(peers):
        assert caps.middle[i] == max_layers(p, fp, first=False, last=False)
        assert caps.first[i] == max_layers(p, fp, first=True, last=False)
        assert caps.last[i] == max_layers(p, fp, first=False, last=True)
        assert caps.single[i] == max_layers(p, fp, first=True, last=True)


def select(fp, peers, policy=Policy.VRAM):
    cols = peer_columns(peers, INGRESS)
    caps = layer_capacities(fp, cols.free_vram_gb)
    return select_peers(fp, caps, policy_order(policy, cols, Weights(), cols.carbon_g_per_kwh))


def test_one_peer_that_holds_everything_is_enough():
    fp = footprint(num_layers=10, layer_mb=1000)
    chosen = select(fp, (peer("small", free_vram_gb=4), peer("big", free_vram_gb=40)))
    assert chosen == Selection((1,), 1, 1)


def test_a_green_peer_that_a_bigger_one_makes_redundant_is_left_out():
    # The carbon order puts a small green peer first; the next one holds the model alone, so
    # the smallest set is that one peer, not both.
    fp = footprint(num_layers=10, layer_mb=1000)
    chosen = select(fp, (peer("green", free_vram_gb=4, carbon=10), peer("big", free_vram_gb=40, carbon=300)),
                    Policy.CARBON)
    assert chosen == Selection((1,), 1, 1)


@settings(max_examples=60, deadline=None)
@given(footprints(), swarms())
def test_no_peer_of_a_selection_can_be_dropped(fp, peers):
    chosen = select(fp, peers, Policy.CARBON)
    if not isinstance(chosen, Selection) or len(chosen.peers) == 1:
        return
    for dropped in chosen.peers:
        rest = tuple(p for i, p in enumerate(peers) if i in chosen.peers and i != dropped)
        assert best_arrangement_layers(rest, fp) < fp.num_layers, f"{peers[dropped].id} was not needed"


def test_fragmented_swarm_is_still_feasible():
    # Every peer holds only 1-2 layers, the ends fewer, but together they hold all 12.
    fp = footprint(num_layers=12, layer_mb=1024, kv_mb=0, activation_mb=0, embedding_mb=1024,
                   lm_head_mb=1024, margin=0.0)
    peers = tuple(peer(f"p{i}", free_vram_gb=2.5) for i in range(10))
    assert best_arrangement_layers(peers, fp) == 2 * 10 - 2
    chosen = select(fp, peers)
    assert isinstance(chosen, Selection)
    assert len(chosen.peers) == 7   # ends hold 1 each, five middles hold 2 each


def test_ends_that_only_a_dirty_peer_can_hold_are_found_down_the_carbon_order():
    # Huge embeddings: the green peers are too small to be first or last, so the selection
    # must reach down the carbon order for big peers to hold both ends.
    fp = footprint(num_layers=6, layer_mb=1024, kv_mb=0, activation_mb=0, embedding_mb=4096,
                   lm_head_mb=4096, margin=0.0)
    green = tuple(peer(f"g{i}", free_vram_gb=3, carbon=10 + i) for i in range(6))
    dirty = (peer("d1", free_vram_gb=12, carbon=800), peer("d2", free_vram_gb=12, carbon=900))
    peers = green + dirty
    chosen = select(fp, peers, Policy.CARBON)
    assert isinstance(chosen, Selection)
    assert {chosen.first, chosen.last} == {6, 7}
    assert len(chosen.peers) == 2    # two big ends hold 8 + 8 layers; no middles needed


def test_infeasible_swarm_reports_shortfall_that_one_more_peer_would_close():
    fp = footprint(num_layers=20, layer_mb=1024, margin=0.1)
    peers = (peer("a", free_vram_gb=8), peer("b", free_vram_gb=6))
    result = select(fp, peers)
    assert isinstance(result, Shortfall)
    assert result.shortfall_layers == 20 - best_arrangement_layers(peers, fp)
    enough = peers + (peer("new", free_vram_gb=result.shortfall_gb),)
    assert isinstance(select(fp, enough), Selection)
    not_enough = peers + (peer("new", free_vram_gb=result.shortfall_gb - 0.01),)
    assert isinstance(select(fp, not_enough), Shortfall)


def test_empty_swarm_needs_one_peer_for_the_whole_model():
    fp = footprint(num_layers=4)
    result = select(fp, ())
    assert result.shortfall_layers == 4
    whole = fp.stage_bytes(4, first=True, last=True) / (1 - fp.safety_margin) / GB
    assert whole <= result.shortfall_gb <= whole + 0.001


def test_huge_context_gives_a_shortfall_not_an_overflow():
    # Terms past int64 (a context of 1e11 tokens needs ~1e22 bytes of KV cache and activations)
    # must still say "no peer fits", not raise OverflowError.
    fp = footprint(num_layers=4, layer_mb=100)
    fp = dataclasses.replace(fp, kv_bytes_per_layer=10**22, activation_bytes=10**25)
    chosen = select(fp, (peer("a", free_vram_gb=80), peer("b", free_vram_gb=80)))
    assert isinstance(chosen, Shortfall)
    assert chosen.shortfall_layers == 4 and chosen.shortfall_gb > 10**15


def test_absurd_free_vram_saturates_instead_of_wrapping_around():
    # 1e300 GB overflowed the int64 cast (to a negative capacity); it saturates to 1 EiB.
    fp = footprint(num_layers=8, layer_mb=1000, activation_mb=0)
    caps = layer_capacities(fp, np.array([1e300, 1e19, 24.0]))
    assert list(caps.single) == [8, 8, min(8, max_layers(peer("c", free_vram_gb=24.0), fp,
                                                         first=True, last=True))]
    assert isinstance(select(fp, (peer("a", free_vram_gb=1e300),)), Selection)
