"""`prismn inspect`: a model's counts and bytes as one plain dict (the CLI prints it as JSON). Pure."""

from __future__ import annotations

from typing import Any

from engine.model.params import param_counts
from engine.model.sizing import (
    compute_dtype_for,
    embedding_bytes,
    kv_bytes_per_token_per_layer,
    layer_bytes,
    vocab_matrix_bytes,
)
from engine.model.spec import ModelSpec


def inspect_model(spec: ModelSpec, quant: str = "bf16", group_size: int = 128,
                  device_kind: str = "cuda") -> dict[str, Any]:
    """Counts and bytes of `spec` at `quant`.

    With tied embeddings, `lm_head_param_count` and `bytes.lm_head` still give the size of the
    shared matrix: a last stage on another peer than the first must hold its own copy.
    `param_count` counts the shared matrix once, as transformers does.
    """
    dtype = compute_dtype_for(quant)
    counts = param_counts(spec)
    head_bytes = vocab_matrix_bytes(spec, quant, group_size, device_kind, dtype)
    return {
        "name": spec.name,
        "num_layers": spec.num_layers,
        "param_count": counts.total,
        "layer_param_count": counts.layer,
        "embedding_param_count": counts.embedding,
        "lm_head_param_count": counts.lm_head,
        "tied_embeddings": spec.tied_embeddings,
        "device_kind": device_kind,
        "bytes": {
            "per_layer": layer_bytes(spec, quant, group_size, dtype, device_kind),
            "embeddings": embedding_bytes(spec, quant, dtype),
            "lm_head": head_bytes,
            "kv_per_token_per_layer": kv_bytes_per_token_per_layer(spec, dtype),
        },
    }
