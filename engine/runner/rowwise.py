"""Batched decode steps that compute, for every session, exactly the bits it computes alone.

Why: greedy decoding must give a session the same text whether it shares a stage with others or
not, and a last-bit difference in a logit flips an argmax at a near tie (SmolLM2, 8 sessions x 48
tokens: 6 of 8 answers changed). Two kernels make a batch differ from a lone step on CPU:
- a linear layer: one row is a matrix-vector product, B rows a matrix product that sums in
  another order (measured: rows agree with each other from B >= 4, never with B = 1);
- attention over caches of different lengths, padded to the longest: the padding moves the blocks
  the softmax sums in.
So inside a batched step (`RowWise`), each linear layer runs one row at a time with the very call a
lone step makes, and attention runs per session on its own unpadded keys and values, with the
arguments transformers passes when it decodes one session (no mask). Everything else in a decoder
layer (norms, rotary embedding, activations, residual adds) works row by row already.

What a batch still saves: one pass of Python through the layers instead of B, and for the lm_head
(the largest matrix: SmolLM2's 49152 x 576 is 113 MB, out of cache) one read from memory for all
rows, by running the rows over a slice of the vocabulary at a time (`LOGIT_CHUNK_ROWS`): a
matrix-vector product's outputs do not depend on how many weight rows it is given.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.overrides import TorchFunctionMode

# Weight rows per slice when the lm_head runs row by row: 4096 x 576 fp32 = 9 MB stays in cache
# while every session's row is multiplied by it.
LOGIT_CHUNK_ROWS = 4096
_LINEAR = torch.nn.functional.linear
_ATTENTION = torch.nn.functional.scaled_dot_product_attention


class RowWise(TorchFunctionMode):
    """While active, linear layers and attention of a [B, 1, ...] batch run one session at a time.

    `lengths[b]` is how many key/value positions session b holds after this step (its cache and the
    new token); the batch's keys are left-padded to the longest, so session b's are the last
    `lengths[b]`.
    """

    def __init__(self, lengths: Sequence[int]) -> None:
        super().__init__()
        self.lengths = [int(n) for n in lengths]
        self.attention_calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is _LINEAR:
            return _linear_rows(*args, **kwargs)
        if func is _ATTENTION:
            self.attention_calls += 1
            return self._attention_rows(*args, **kwargs)
        return func(*args, **kwargs)

    def _attention_rows(self, query, key, value, attn_mask=None, **kwargs):
        if attn_mask is not None or query.shape[0] != len(self.lengths) or query.shape[2] != 1:
            raise RowWiseUnsupported("attention was called with a mask or not one query per session")
        rows = []
        for row, length in enumerate(self.lengths):
            start = key.shape[2] - length
            rows.append(_ATTENTION(query[row:row + 1], key[row:row + 1, :, start:].contiguous(),
                                   value[row:row + 1, :, start:].contiguous(), attn_mask=None, **kwargs))
        return torch.cat(rows)


class RowWiseUnsupported(RuntimeError):
    """The model computes attention in a way RowWise cannot split per session."""


def _linear_rows(inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear of [B, 1, K] as B calls of [1, 1, K] (the lone step's call), bit for bit."""
    if inputs.dim() != 3 or inputs.shape[1] != 1 or inputs.shape[0] == 1:
        return _LINEAR(inputs, weight, bias)
    rows = [inputs[row:row + 1] for row in range(inputs.shape[0])]
    if weight.shape[0] <= LOGIT_CHUNK_ROWS or type(weight) is not torch.Tensor:
        return torch.cat([_LINEAR(row, weight, bias) for row in rows])
    out = inputs.new_empty((inputs.shape[0], 1, weight.shape[0]))
    for start in range(0, weight.shape[0], LOGIT_CHUNK_ROWS):
        end = min(start + LOGIT_CHUNK_ROWS, weight.shape[0])
        part, part_bias = weight[start:end], None if bias is None else bias[start:end]
        for index, row in enumerate(rows):
            out[index:index + 1, :, start:end] = _LINEAR(row, part, part_bias)
    return out
