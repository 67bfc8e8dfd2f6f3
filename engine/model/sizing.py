"""Bytes and FLOPs of a model per decoder layer and per end, for a quantisation. Pure.

Storage rules (all counts exact integers):
- fp32 / bf16 / fp16: every weight takes 4 / 2 / 2 bytes.
- int8: each Linear weight takes 1 byte, plus one fp16 scale per output channel (row), as in
  LLM.int8 / per-channel absmax weight quantisation.
- int4: each Linear weight takes half a byte (two per byte, packed within a row), plus, for every
  group of `group_size` consecutive weights along a row's input features, an fp16 scale and an
  fp16 zero point (GPTQ/AWQ layout). A row whose length is not a multiple of `group_size` ends with
  one short group: groups per row = ceil(in_features / group_size).
- The token embedding and the lm_head matrices (vocab x hidden) are quantised like Linear weights
  in int8/int4, one scale (or one set of groups) per vocabulary row, as GGUF quantises
  token_embd/output. Norm weights, biases and the MoE router stay in the compute dtype.
- The compute dtype (activations, KV cache, kept tensors) is fp32 for fp32 weights, fp16 for fp16
  weights and bf16 otherwise, unless `compute_dtype` names one explicitly.
"""

from __future__ import annotations

import math
from numbers import Real

from engine.errors import InvalidInput
from engine.model.footprint import ModelFootprint
from engine.model.params import layer_linears, param_counts
from engine.model.spec import ModelSpec

QUANTS: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8", "int4")
COMPUTE_DTYPES: tuple[str, ...] = ("fp32", "bf16", "fp16")
_FLOAT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
_FP16_BYTES = 2                   # quantisation scales and zero points are fp16


def _check_positive_int(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(field, value, "expected an integer >= 1")
    return value


def _check_quant(quant: object) -> str:
    if quant not in QUANTS:
        raise InvalidInput("quant", quant, f"expected one of {', '.join(QUANTS)}")
    return quant  # type: ignore[return-value]


def compute_dtype_for(quant: str, compute_dtype: str | None = None) -> str:
    """The dtype activations, KV cache, norms and biases use for weights stored at `quant`."""
    _check_quant(quant)
    if compute_dtype is None:
        return quant if quant in ("fp32", "fp16") else "bf16"
    if compute_dtype not in COMPUTE_DTYPES:
        raise InvalidInput("compute_dtype", compute_dtype, f"expected one of {', '.join(COMPUTE_DTYPES)}")
    return compute_dtype


def matrix_bytes(rows: int, cols: int, quant: str, group_size: int = 128) -> int:
    """Bytes of one (rows x cols) weight matrix; rows are output channels, cols input features."""
    _check_quant(quant)
    _check_positive_int("group_size", group_size)
    if quant in _FLOAT_BYTES:
        return rows * cols * _FLOAT_BYTES[quant]
    if quant == "int8":
        return rows * cols + rows * _FP16_BYTES
    groups_per_row = math.ceil(cols / group_size)
    return rows * math.ceil(cols / 2) + rows * groups_per_row * 2 * _FP16_BYTES


def layer_bytes(spec: ModelSpec, quant: str, group_size: int = 128, compute_dtype: str | None = None) -> int:
    """Weights of one decoder layer: its Linear matrices at `quant`, the rest in the compute dtype."""
    kept_bytes = _FLOAT_BYTES[compute_dtype_for(quant, compute_dtype)]
    linear = sum(
        lin.copies * matrix_bytes(lin.out_features, lin.in_features, quant, group_size)
        for lin in layer_linears(spec)
    )
    return linear + param_counts(spec).layer_kept * kept_bytes


def vocab_matrix_bytes(spec: ModelSpec, quant: str, group_size: int = 128) -> int:
    """The embedding matrix, and the lm_head, which has the same (vocab x hidden) shape."""
    return matrix_bytes(spec.vocab_size, spec.hidden_size, quant, group_size)


def kv_bytes_per_token_per_layer(spec: ModelSpec, compute_dtype: str) -> int:
    """K and V of one token in one layer: 2 * n_kv_heads * head_dim * bytes(compute dtype)."""
    return 2 * spec.num_kv_heads * spec.head_dim * _FLOAT_BYTES[compute_dtype]


def activation_bytes(spec: ModelSpec, context: int, batch: int, compute_dtype: str) -> int:
    """Peak workspace of one decoder layer during a prefill of `batch` x `context` tokens.

    tokens = batch * context. The residual stream and its normed copy (2 * hidden per token) stay
    live through the layer; on top of them, the larger of
      attention: q, k, v (heads + 2 * kv_heads) * head_dim, the output heads * head_dim, and the
                 scores of one head at a time (context per token: batch * context^2 in all), or
      MLP:       the gate and up projections (2 * intermediate per token; one expert at a time).
    Layers run one after another, so a stage needs this once, however many layers it holds.
    """
    tokens = batch * context
    attention = tokens * ((spec.num_attention_heads * 2 + spec.num_kv_heads * 2) * spec.head_dim + context)
    mlp = tokens * 2 * spec.intermediate_size
    resident = tokens * 2 * spec.hidden_size
    return (resident + max(attention, mlp)) * _FLOAT_BYTES[compute_dtype]


def footprint(
    spec: ModelSpec,
    quant: str = "bf16",
    context: int = 4096,
    batch: int = 1,
    group_size: int = 128,
    safety_margin: float = 0.10,
    compute_dtype: str | None = None,
) -> ModelFootprint:
    """Everything planning needs to know about `spec` served at `quant` for `batch` x `context`."""
    _check_quant(quant)
    _check_positive_int("context", context)
    _check_positive_int("batch", batch)
    _check_positive_int("group_size", group_size)
    if (
        isinstance(safety_margin, bool)
        or not isinstance(safety_margin, Real)
        or not 0 <= safety_margin < 1
    ):
        raise InvalidInput("safety_margin", safety_margin, "expected a fraction in [0, 1)")
    dtype = compute_dtype_for(quant, compute_dtype)
    counts = param_counts(spec)
    head_bytes = vocab_matrix_bytes(spec, quant, group_size)
    return ModelFootprint(
        name=spec.name,
        num_layers=spec.num_layers,
        param_count=counts.total,
        quant=quant,
        layer_bytes=layer_bytes(spec, quant, group_size, dtype),
        embedding_bytes=head_bytes,
        final_norm_bytes=counts.final_norm * _FLOAT_BYTES[dtype],
        # Tied or not, the last stage needs a head matrix; ModelFootprint.stage_bytes skips it
        # only when the last stage is also the first and already holds the embeddings.
        lm_head_bytes=head_bytes,
        tied_embeddings=spec.tied_embeddings,
        kv_bytes_per_layer=kv_bytes_per_token_per_layer(spec, dtype) * context * batch,
        activation_bytes=activation_bytes(spec, context, batch, dtype),
        # ~2 FLOPs (multiply + add) per weight a token passes through (Kaplan et al. 2020, C ≈ 2N).
        layer_flops_per_token=2 * counts.layer_active,
        head_flops_per_token=2 * counts.lm_head,
        safety_margin=float(safety_margin),
    )
