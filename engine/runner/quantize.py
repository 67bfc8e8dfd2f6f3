"""Weight-only int8 / int4 quantisation of a stage's Linear layers at load, with torchao; resident bytes.

What each option really holds and costs was measured before choosing (torchao 0.18, torch 2.13 CPU,
a 1536 x 576 Linear, one token; numbers in the issue-10 note):
- int8, `Int8WeightOnlyConfig` (CPU and CUDA): int8 weights + fp32 scale + int8 zero point per row,
  1.009 bytes/weight here, 252 us vs 147 us in bf16.
- int4 on CUDA, `Int4WeightOnlyConfig(int4_packing_format="tile_packed_to_4d")`: tinygemm's packed
  int4 (two per byte) + bf16 scale and zero per group; in_features padded to a multiple of 1024 and
  out_features to 8 by torchao. Needs bf16 compute and compute capability >= 8.0.
- int4 on CPU: torchao's packed int4 layouts need CUDA or the mslk kernel package, so
  `IntxWeightOnlyConfig(int4, PerGroup)` is used: int4 VALUES stored one per int8 byte + a scale (in
  the compute dtype) and an int8 zero point per group, 1.047 bytes/weight, 669 us. The alternative,
  aten's packed `_weight_int4pack_mm_for_cpu`, holds 0.5625 bytes/weight but took 5,633 us: 8x slower.
- Embeddings stay in the compute dtype: a quantised embedding is dequantised whole on every lookup
  (86 ms per token for SmolLM2's 49152 x 576 table).
engine.model.sizing sizes exactly these layouts per device kind, with the same group-size rule.
"""

from __future__ import annotations

import torch
from torch import nn

from engine.errors import InvalidInput
from engine.model.sizing import COMPUTE_DTYPES, QUANTS, compute_dtype_for, int4_group_size

FLOAT_QUANTS = ("fp32", "bf16", "fp16")
DEFAULT_GROUP_SIZE = 128
_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def check_quant(quant: str, dtype: str | None, device_kind: str) -> str:
    """`quant` when the runner can hold weights that way with compute dtype `dtype` on `device_kind`."""
    quant = _ALIASES.get(quant, quant)
    if quant not in QUANTS:
        raise InvalidInput("quant", quant, f"expected one of {', '.join(QUANTS)}")
    compute = compute_dtype_name(quant, dtype)
    if quant == "int4" and device_kind == "cuda" and compute != "bf16":
        raise InvalidInput("dtype", compute, "int4 on CUDA computes in bf16 (tinygemm kernels)")
    return quant


def compute_dtype_name(quant: str, dtype: str | None) -> str:
    """Float weights compute in their own dtype; int8/int4 in `dtype`, by default what the planner assumes."""
    quant = _ALIASES.get(quant, quant)
    dtype = _ALIASES.get(dtype, dtype) if dtype is not None else None
    if quant in FLOAT_QUANTS:
        if dtype not in (None, quant):
            raise InvalidInput("dtype", dtype, f"weights held as {quant} compute in {quant}")
        return quant
    if dtype is not None and dtype not in COMPUTE_DTYPES:
        raise InvalidInput("dtype", dtype, f"expected one of {', '.join(COMPUTE_DTYPES)}")
    return compute_dtype_for(quant, dtype)


def _config(quant: str, device_kind: str, group_size: int):
    from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig, IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerGroup
    from torchao.quantization.quantize_.workflows.int4.int4_packing_format import Int4PackingFormat

    if quant == "int8":
        return Int8WeightOnlyConfig(set_inductor_config=False)
    if device_kind == "cuda":
        return Int4WeightOnlyConfig(group_size=group_size, int4_packing_format=Int4PackingFormat.TILE_PACKED_TO_4D,
                                    set_inductor_config=False)
    return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(group_size))


def quantize_linears(module: nn.Module, quant: str, device_kind: str,
                     group_size: int = DEFAULT_GROUP_SIZE) -> nn.Module:
    """Quantise every nn.Linear weight in `module` in place (int8/int4; float quants: no-op).

    int4 groups: per matrix, the largest of group_size, group_size/2, ... (>= 32) dividing its
    in_features; a matrix none divides keeps its compute dtype (sizing does the same).
    """
    if quant in FLOAT_QUANTS:
        return module
    from torchao.quantization import quantize_

    by_group: dict[int | None, set[str]] = {}
    for name, child in module.named_modules():
        if isinstance(child, nn.Linear):
            group = int4_group_size(child.in_features, group_size) if quant == "int4" else None
            if quant == "int4" and group is None:
                continue
            by_group.setdefault(group, set()).add(name)
    for group, names in by_group.items():
        quantize_(module, _config(quant, device_kind, group or group_size),
                  filter_fn=lambda m, fqn, names=names: isinstance(m, nn.Linear) and fqn in names)
    if quant == "int8":
        # Mixture-of-experts weights are 3-d parameters [experts, out, in] (transformers 5), not Linears.
        from torchao.quantization import FqnToConfig

        experts = [name for name, param in module.named_parameters() if param.dim() == 3]
        if experts:
            quantize_(module, FqnToConfig({name: _config("int8", device_kind, group_size) for name in experts}),
                      filter_fn=None)
    return module


# ---- resident bytes ---------------------------------------------------------------------------

def tensor_bytes(tensors, seen: set[tuple[str, int]] | None = None) -> int:
    """Bytes of the storages behind `tensors`, each storage counted once; torchao's quantised tensors
    are opened to the plain tensors they hold (int data, scales, zero points)."""
    seen = set() if seen is None else seen
    total = 0
    for tensor in tensors:
        if tensor is None or tensor.is_meta:
            continue
        if hasattr(tensor, "__tensor_flatten__") and type(tensor) not in (torch.Tensor, nn.Parameter):
            names, _ = tensor.__tensor_flatten__()
            total += tensor_bytes([getattr(tensor, name) for name in names], seen)
            continue
        storage = tensor.untyped_storage()
        key = (str(tensor.device), storage.data_ptr())
        if key not in seen:
            seen.add(key)
            total += storage.nbytes()
    return total


def module_weight_bytes(module: nn.Module) -> int:
    """Resident bytes of a module's parameters and persistent buffers (rotary caches excluded)."""
    return tensor_bytes(list(module.parameters()))
