"""RowWise: inside a batched decode step, linear layers and attention give every session the very
bits its lone step computes (a near tie in greedy decoding must never flip)."""

from __future__ import annotations

import torch

from engine.runner.rowwise import LOGIT_CHUNK_ROWS, RowWise

F = torch.nn.functional


def test_linear_rows_equal_the_lone_rows_for_layers_and_a_large_lm_head():
    torch.manual_seed(0)
    rows = torch.randn(5, 1, 64)
    for out_features in (96, LOGIT_CHUNK_ROWS * 2 + 7):       # a layer; an lm_head run over vocabulary slices
        weight, bias = torch.randn(out_features, 64), torch.randn(out_features)
        with RowWise([1] * 5):
            batched = F.linear(rows, weight, bias)
        for row in range(5):
            assert torch.equal(batched[row:row + 1], F.linear(rows[row:row + 1], weight, bias))


def test_attention_rows_see_only_their_own_keys_as_alone():
    torch.manual_seed(1)
    lengths, longest = [3, 9, 6], 9
    query = torch.randn(3, 4, 1, 16)
    keys, values = torch.randn(3, 2, longest, 16), torch.randn(3, 2, longest, 16)
    keys[0, :, :longest - 3] = 1e4              # padding that would swamp the softmax if it were seen
    with RowWise(lengths):
        batched = F.scaled_dot_product_attention(query, keys, values, scale=0.25, enable_gqa=True)
    for row, length in enumerate(lengths):
        alone = F.scaled_dot_product_attention(query[row:row + 1], keys[row:row + 1, :, longest - length:].contiguous(),
                                               values[row:row + 1, :, longest - length:].contiguous(), scale=0.25,
                                               enable_gqa=True)
        assert torch.equal(batched[row:row + 1], alone)
