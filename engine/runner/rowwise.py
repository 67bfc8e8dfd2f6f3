"""Batched decode steps that compute, for every session, exactly the bits it computes alone.

Why: greedy decoding must give a session the same text whether it shares a stage with others or
not, and a last-bit difference in a logit flips an argmax at a near tie (SmolLM2, 8 sessions x 48
tokens: 6 of 8 answers changed). Two kernels make a batch differ from a lone step on CPU:
- a linear layer: one row is a matrix-vector product, B rows a matrix product that sums in
  another order (measured: rows agree with each other from B >= 4, never with B = 1);
- attention over caches of different lengths, padded to the longest: the padding moves the blocks
  the softmax sums in.
So inside a batched step (`RowWise`), each linear layer runs one row at a time with the very call a
lone step makes, and attention runs per session on the keys and values its own cache returns
(`SessionCaches`: no padded copy), with the arguments transformers passes when it decodes one
session (no mask). Everything else in a decoder layer (norms, rotary embedding, activations,
residual adds) works row by row already.

What a batch still saves: one pass of Python through the layers instead of B, each weight matrix
read from memory once for all rows (the rows follow each other while it is in cache), and for the
lm_head (the largest matrix: SmolLM2's 49152 x 576 is 113 MB) the same by running the rows over a
slice of the vocabulary at a time (`LOGIT_CHUNK_ROWS`): a matrix-vector product's outputs do not
depend on how many weight rows it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

# Weight rows per slice when a large matrix (the lm_head) runs row by row: the slice stays in cache
# while every session's row is multiplied by it. Measured for SmolLM2's lm_head, 4 rows, this CPU:
# 1024 rows (2.4 MB) 21 ms, 4096 rows 33 ms, 8192 rows 45 ms; one row alone 15 ms.
LOGIT_CHUNK_ROWS = 1024
_LINEAR = torch.nn.functional.linear
_ATTENTION = torch.nn.functional.scaled_dot_product_attention


class RowWise(TorchFunctionMode):
    """While active, linear layers and attention of a [B, 1, ...] batch run one session at a time.

    Attention reads each session's keys and values as its own cache returned them (`SessionCaches`
    hands them over before each layer's attention call), so no session sees another's or padding.
    """

    def __init__(self) -> None:
        super().__init__()
        self.attention_calls = 0
        self.pending: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is _LINEAR:
            return _linear_rows(*args, **kwargs)
        if func is _ATTENTION:
            self.attention_calls += 1
            return self._attention_rows(*args, **kwargs)
        return func(*args, **kwargs)

    def _attention_rows(self, query, key, value, attn_mask=None, **kwargs):
        pending, self.pending = self.pending, None
        if pending is None or attn_mask is not None or query.shape[0] != len(pending[0]) or query.shape[2] != 1:
            raise RowWiseUnsupported("attention was called with a mask, without the sessions' keys, or not "
                                     "one query per session")
        keys, values = pending
        return torch.cat([_ATTENTION(query[row:row + 1], keys[row], values[row], attn_mask=None, **kwargs)
                          for row in range(len(keys))])


class SessionCaches:
    """The KV cache a batched decode step gives the decoder layers: `update` appends each row's new
    keys and values to that session's own cache (as its lone step would) and hands what each cache
    returns to `rows` for the attention call that follows."""

    def __init__(self, caches: Sequence[Any], rows: RowWise) -> None:
        self.caches = list(caches)
        self.rows = rows

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = [], []
        for row, cache in enumerate(self.caches):
            k, v = cache.update(key_states[row:row + 1], value_states[row:row + 1], layer_idx)
            keys.append(k)
            values.append(v)
        self.rows.pending = (keys, values)
        return key_states, value_states


class RowWiseUnsupported(RuntimeError):
    """The model computes attention in a way RowWise cannot split per session."""


def _linear_rows(inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear of [B, 1, K] as B calls of [1, 1, K] (the lone step's call), bit for bit."""
    if inputs.dim() != 3 or inputs.shape[1] != 1 or inputs.shape[0] == 1:
        return _LINEAR(inputs, weight, bias)
    rows = [inputs[row:row + 1] for row in range(inputs.shape[0])]
    if weight.shape[0] <= 2 * LOGIT_CHUNK_ROWS or type(weight) is not torch.Tensor:     # a layer's matrix
        return torch.cat([_LINEAR(row, weight, bias) for row in rows])
    out = inputs.new_empty((inputs.shape[0], 1, weight.shape[0]))
    for start in range(0, weight.shape[0], LOGIT_CHUNK_ROWS):
        end = min(start + LOGIT_CHUNK_ROWS, weight.shape[0])
        part, part_bias = weight[start:end], None if bias is None else bias[start:end]
        for index, row in enumerate(rows):
            out[index:index + 1, :, start:end] = _LINEAR(row, part, part_bias)
    return out
