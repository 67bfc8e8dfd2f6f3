"""A decoder-only model's shape, read from a Hugging Face `config.json` dict. Pure: no I/O.

Only the facts that decide parameter counts, bytes and FLOPs are kept. Defaults follow the
transformers config classes of each family (for example Gemma ties its embeddings unless told
otherwise, Qwen2 always has q/k/v biases).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import InvalidInput
from engine.model.architectures import EXECUTABLE_MODEL_TYPES, TIED_BY_DEFAULT, check_executable

ARCHITECTURES: tuple[str, ...] = EXECUTABLE_MODEL_TYPES


@dataclass(frozen=True)
class ModelSpec:
    name: str
    architecture: str                # one of ARCHITECTURES (the config's model_type)
    num_layers: int
    hidden_size: int
    intermediate_size: int           # per expert for Mixtral
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    tied_embeddings: bool
    qkv_bias: bool = False           # q/k/v projections carry a bias (Qwen2; attention_bias=true)
    o_bias: bool = False             # o_proj carries a bias (attention_bias=true in Llama/Gemma)
    mlp_bias: bool = False           # gate/up/down carry a bias (Llama's mlp_bias)
    num_local_experts: int = 1       # Mixtral: experts per layer; 1 for dense models
    num_experts_per_tok: int = 1     # Mixtral: experts each token runs through
    torch_dtype: str | None = None   # dtype the checkpoint was saved in, as the config names it

    @property
    def is_moe(self) -> bool:
        return self.num_local_experts > 1


# Far above any real size (layers ~10^2, hidden ~10^4, vocab ~10^5, experts ~10^2), and small enough
# that every product the planner forms stays exact in int64 and float64.
MAX_CONFIG_INT = 2**31


def _positive_int(config: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = config.get(key, default)
    # bool is an int subclass; a config saying `true` for a size is a broken config.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONFIG_INT:
        raise InvalidInput(f"config.{key}", value, f"expected a positive integer up to {MAX_CONFIG_INT:,}")
    return value


def _flag(config: Mapping[str, Any], key: str, default: bool) -> bool:
    value = config.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidInput(f"config.{key}", value, "expected true or false")
    return value


def spec_from_config(config: Mapping[str, Any], name: str | None = None) -> ModelSpec:
    """Build a ModelSpec from a config.json dict; `name` defaults to the config's `_name_or_path`."""
    if not isinstance(config, Mapping):
        raise InvalidInput("config", type(config).__name__, "expected a JSON object (dict)")
    architecture = check_executable(config.get("model_type"))
    hidden_size = _positive_int(config, "hidden_size")
    num_attention_heads = _positive_int(config, "num_attention_heads")
    if config.get("num_key_value_heads") is None:
        # Missing or null: multi-head attention, as LlamaConfig/Qwen2Config/Phi3Config read a null.
        num_kv_heads = num_attention_heads
    else:
        num_kv_heads = _positive_int(config, "num_key_value_heads")
    if num_attention_heads % num_kv_heads:
        raise InvalidInput(
            "config.num_key_value_heads", num_kv_heads,
            f"must divide num_attention_heads={num_attention_heads}",
        )
    if config.get("head_dim") is not None:
        head_dim = _positive_int(config, "head_dim")
    elif hidden_size % num_attention_heads:
        raise InvalidInput(
            "config.hidden_size", hidden_size,
            f"not divisible by num_attention_heads={num_attention_heads} and no head_dim given",
        )
    else:
        head_dim = hidden_size // num_attention_heads

    attention_bias = _flag(config, "attention_bias", False)
    if architecture == "qwen2":
        qkv_bias, o_bias = True, False          # Qwen2Attention hard-codes bias=True on q/k/v only
    elif architecture in ("llama", "gemma", "gemma2"):
        qkv_bias = o_bias = attention_bias
    else:
        qkv_bias = o_bias = False               # mistral, phi3, mixtral: no attention biases
    mlp_bias = _flag(config, "mlp_bias", False) if architecture == "llama" else False

    if architecture == "mixtral":
        num_local_experts = _positive_int(config, "num_local_experts", 8)
        num_experts_per_tok = _positive_int(config, "num_experts_per_tok", 2)
        if num_experts_per_tok > num_local_experts:
            raise InvalidInput(
                "config.num_experts_per_tok", num_experts_per_tok,
                f"exceeds num_local_experts={num_local_experts}",
            )
    else:
        num_local_experts = num_experts_per_tok = 1

    # transformers >= 5 writes "dtype"; checkpoints on the hub still say "torch_dtype".
    dtype = config.get("torch_dtype", config.get("dtype"))
    raw_name = name if name is not None else config.get("_name_or_path") or architecture
    return ModelSpec(
        name=str(raw_name),
        architecture=architecture,
        num_layers=_positive_int(config, "num_hidden_layers"),
        hidden_size=hidden_size,
        intermediate_size=_positive_int(config, "intermediate_size"),
        num_attention_heads=num_attention_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        vocab_size=_positive_int(config, "vocab_size"),
        tied_embeddings=_flag(config, "tie_word_embeddings", TIED_BY_DEFAULT[architecture]),
        qkv_bias=qkv_bias,
        o_bias=o_bias,
        mlp_bias=mlp_bias,
        num_local_experts=num_local_experts,
        num_experts_per_tok=num_experts_per_tok,
        torch_dtype=str(dtype) if dtype is not None else None,
    )
