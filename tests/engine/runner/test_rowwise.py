"""RowWise: inside a batched decode step, linear layers and attention give every session the very
bits its lone step computes (a near tie in greedy decoding must never flip)."""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache

from engine.runner.rowwise import LOGIT_CHUNK_ROWS, RowWise, SessionCaches

F = torch.nn.functional


def test_linear_rows_equal_the_lone_rows_for_layers_and_a_large_lm_head():
    torch.manual_seed(0)
    rows = torch.randn(5, 1, 64)
    for out_features in (96, LOGIT_CHUNK_ROWS * 2 + 7):       # a layer; an lm_head run over vocabulary slices
        weight, bias = torch.randn(out_features, 64), torch.randn(out_features)
        with RowWise():
            batched = F.linear(rows, weight, bias)
        for row in range(5):
            assert torch.equal(batched[row:row + 1], F.linear(rows[row:row + 1], weight, bias))


def test_attention_rows_see_only_their_own_cache_as_alone():
    torch.manual_seed(1)
    lengths = [3, 9, 6]
    caches = [DynamicCache() for _ in lengths]
    for cache, length in zip(caches, lengths, strict=True):
        cache.update(torch.randn(1, 2, length - 1, 16), torch.randn(1, 2, length - 1, 16), 0)
    query, new_keys, new_values = torch.randn(3, 4, 1, 16), torch.randn(3, 2, 1, 16), torch.randn(3, 2, 1, 16)
    alone = []
    for row, cache in enumerate(caches):           # what each session computes alone, on a copy of its cache
        keys = torch.cat([cache.layers[0].keys, new_keys[row:row + 1]], dim=2)
        values = torch.cat([cache.layers[0].values, new_values[row:row + 1]], dim=2)
        alone.append(F.scaled_dot_product_attention(query[row:row + 1], keys, values, scale=0.25, enable_gqa=True))
    rows = RowWise()
    with rows:
        keys, values = SessionCaches(caches, rows).update(new_keys, new_values, 0)
        batched = F.scaled_dot_product_attention(query, keys, values, scale=0.25, enable_gqa=True)
    for row, length in enumerate(lengths):
        assert caches[row].layers[0].keys.shape[2] == length         # its new column is in its own cache
        assert torch.equal(batched[row:row + 1], alone[row])
