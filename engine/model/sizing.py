"""Bytes and FLOPs of a model per decoder layer and per end, for a quantisation and device kind. Pure.

Storage rules (all counts exact integers), as the runners really hold them (engine.runner.quantize,
torchao 0.18; measured, see its docstring):
- fp32 / bf16 / fp16: every weight takes 4 / 2 / 2 bytes.
- int8 (CPU and CUDA): each Linear weight takes 1 byte, plus an fp32 scale and an int8 zero point
  per output channel (row): rows * (cols + 5).
- int4 groups: per matrix, the largest of group_size, group_size/2, ... (down to 32) that divides
  its in_features (`int4_group_size`); a matrix none divides stays in the compute dtype.
- int4 on CUDA (tinygemm's packed layout): half a byte per weight plus a bf16 scale and a bf16 zero
  per group, after torchao pads in_features to a multiple of 1024 and out_features to 8.
- int4 on CPU: torchao has no packed int4 CPU layout without extra kernel packages, so each weight
  takes one byte (int4 values held in int8) plus a scale in the compute dtype and an int8 zero
  point per group.
- Mixture-of-experts matrices are quantised in int8 and kept in the compute dtype in int4 (torchao's
  int4 CPU layout takes 2-d weights only).
- The lm_head (vocab x hidden) is a Linear and is quantised like one. The token embedding, norm
  weights, biases and the MoE router stay in the compute dtype (a quantised embedding table is
  dequantised whole on every lookup).
- The compute dtype (activations, KV cache, kept tensors) is fp32 for fp32 weights, fp16 for fp16
  weights and bf16 otherwise, unless `compute_dtype` names one explicitly.
"""

from __future__ import annotations

from numbers import Real

from engine.errors import InvalidInput
from engine.model.footprint import ModelFootprint
from engine.model.params import layer_linears, param_counts
from engine.model.spec import ModelSpec

QUANTS: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8", "int4")
COMPUTE_DTYPES: tuple[str, ...] = ("fp32", "bf16", "fp16")
DEVICE_KINDS: tuple[str, ...] = ("cuda", "cpu")
_FLOAT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
_INT8_ROW_BYTES = 4 + 1           # torchao Int8Tensor: fp32 scale + int8 zero point per row
_TINYGEMM_GROUP_BYTES = 2 + 2     # bf16 scale + bf16 zero per group and row
_MIN_INT4_GROUP = 32


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


def _check_device_kind(device_kind: object) -> str:
    if device_kind not in DEVICE_KINDS:
        raise InvalidInput("device_kind", device_kind, f"expected one of {', '.join(DEVICE_KINDS)}")
    return device_kind  # type: ignore[return-value]


def device_kind_for(gpus) -> str:
    """The device kind to size for, from the peers' GPU names (None: a CPU peer). CPU peers hold int4
    at about twice the packed CUDA size, so a swarm with any CPU peer is sized as CPU (conservative
    for its GPU peers; one footprint serves a whole plan)."""
    return "cpu" if any(gpu is None for gpu in gpus) else "cuda"


def int4_group_size(cols: int, group_size: int = 128) -> int | None:
    """The int4 group of a matrix with `cols` input features: the largest of group_size,
    group_size/2, ... (not below 32, or group_size itself when smaller) dividing cols; else None."""
    group = group_size
    while cols % group and group // 2 >= _MIN_INT4_GROUP:
        group //= 2
    return group if cols % group == 0 else None


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def matrix_bytes(rows: int, cols: int, quant: str, group_size: int = 128, device_kind: str = "cuda",
                 compute_dtype: str | None = None) -> int:
    """Bytes of one (rows x cols) weight matrix; rows are output channels, cols input features."""
    _check_quant(quant)
    _check_positive_int("group_size", group_size)
    _check_device_kind(device_kind)
    if quant in _FLOAT_BYTES:
        return rows * cols * _FLOAT_BYTES[quant]
    if quant == "int8":
        return rows * (cols + _INT8_ROW_BYTES)
    kept_bytes = _FLOAT_BYTES[compute_dtype_for(quant, compute_dtype)]
    group = int4_group_size(cols, group_size)
    if group is None:
        return rows * cols * kept_bytes
    if device_kind == "cpu":
        return rows * cols + rows * (cols // group) * (kept_bytes + 1)
    rows_padded, cols_padded = _round_up(rows, 8), _round_up(cols, 1024)
    return rows_padded * cols_padded // 2 + rows_padded * (cols_padded // group) * _TINYGEMM_GROUP_BYTES


def layer_bytes(spec: ModelSpec, quant: str, group_size: int = 128, compute_dtype: str | None = None,
                device_kind: str = "cuda") -> int:
    """Weights of one decoder layer: its Linear matrices at `quant`, the rest in the compute dtype."""
    dtype = compute_dtype_for(quant, compute_dtype)
    kept_bytes = _FLOAT_BYTES[dtype]
    linear = 0
    for lin in layer_linears(spec):
        if lin.copies > 1 and quant == "int4":      # MoE experts: see the module docstring
            linear += lin.copies * lin.out_features * lin.in_features * kept_bytes
        else:
            linear += lin.copies * matrix_bytes(lin.out_features, lin.in_features, quant, group_size,
                                                device_kind, dtype)
    return linear + param_counts(spec).layer_kept * kept_bytes


def embedding_bytes(spec: ModelSpec, quant: str, compute_dtype: str | None = None) -> int:
    """The token embedding matrix (vocab x hidden), always in the compute dtype."""
    return spec.vocab_size * spec.hidden_size * _FLOAT_BYTES[compute_dtype_for(quant, compute_dtype)]


def vocab_matrix_bytes(spec: ModelSpec, quant: str, group_size: int = 128, device_kind: str = "cuda",
                       compute_dtype: str | None = None) -> int:
    """The lm_head matrix (vocab x hidden) at `quant`."""
    return matrix_bytes(spec.vocab_size, spec.hidden_size, quant, group_size, device_kind, compute_dtype)


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
    device_kind: str = "cuda",
) -> ModelFootprint:
    """Everything planning needs to know about `spec` served at `quant` for `batch` x `context` on
    peers of `device_kind` (cuda or cpu: int4 is held differently on each)."""
    _check_quant(quant)
    _check_device_kind(device_kind)
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
    head_bytes = vocab_matrix_bytes(spec, quant, group_size, device_kind, dtype)
    return ModelFootprint(
        name=spec.name,
        num_layers=spec.num_layers,
        param_count=counts.total,
        quant=quant,
        layer_bytes=layer_bytes(spec, quant, group_size, dtype, device_kind),
        embedding_bytes=embedding_bytes(spec, quant, dtype),
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
        device_kind=device_kind,
    )
