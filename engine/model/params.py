"""Exact parameter counts of a decoder-only model, per part, from its ModelSpec. Pure.

A decoder layer is split into the weight matrices of its Linear layers (what int8/int4 quantise)
and the small tensors kept in the compute dtype (norm weights, biases, the MoE router). Shapes
follow the transformers modeling files: `modeling_{llama,mistral,qwen2,gemma,gemma2,phi3,mixtral}.py`.
Phi-3's fused qkv_proj and gate_up_proj are listed as the separate matrices they fuse: the counts,
the per-output-channel scales and the per-row int4 groups come out the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.model.spec import ModelSpec


@dataclass(frozen=True)
class Linear:
    """One weight matrix (out_features x in_features), repeated once per expert for MoE layers."""

    name: str
    in_features: int
    out_features: int
    copies: int = 1            # num_local_experts for expert matrices
    active_copies: int = 1     # copies one token runs through (num_experts_per_tok)

    @property
    def params(self) -> int:
        return self.in_features * self.out_features * self.copies

    @property
    def active_params(self) -> int:
        return self.in_features * self.out_features * self.active_copies


@dataclass(frozen=True)
class ParamCounts:
    layer: int                 # one decoder layer, every expert included
    layer_active: int          # one decoder layer, only the experts a token uses
    layer_linear: int          # weights of the layer's Linear matrices (quantisable part)
    layer_kept: int            # norms + biases + router: stay in the compute dtype
    embedding: int             # embed_tokens
    final_norm: int
    lm_head: int               # size of the head matrix, even when tied to the embeddings
    total: int                 # whole model; a tied head is counted once, as transformers does
    active_total: int          # parameters one token touches (MoE: routed experts only)


def _norms_per_layer(spec: ModelSpec) -> int:
    # Gemma2 wraps both attention and MLP in pre- and post-norms: 4 RMSNorms per layer.
    return 4 if spec.architecture == "gemma2" else 2


def layer_linears(spec: ModelSpec) -> tuple[Linear, ...]:
    """The weight matrices of one decoder layer, attention first, then the MLP (or experts)."""
    h = spec.hidden_size
    q_out = spec.num_attention_heads * spec.head_dim
    kv_out = spec.num_kv_heads * spec.head_dim
    attention = (
        Linear("q_proj", h, q_out),
        Linear("k_proj", h, kv_out),
        Linear("v_proj", h, kv_out),
        Linear("o_proj", q_out, h),
    )
    i = spec.intermediate_size
    n, k = spec.num_local_experts, spec.num_experts_per_tok
    mlp = (
        Linear("gate_proj", h, i, n, k),
        Linear("up_proj", h, i, n, k),
        Linear("down_proj", i, h, n, k),
    )
    return attention + mlp


def layer_kept_params(spec: ModelSpec) -> int:
    """Parameters of one layer that quantisation leaves alone: norms, biases and the router."""
    h = spec.hidden_size
    kept = _norms_per_layer(spec) * h
    if spec.qkv_bias:
        kept += (spec.num_attention_heads + 2 * spec.num_kv_heads) * spec.head_dim
    if spec.o_bias:
        kept += h
    if spec.mlp_bias:
        kept += 2 * spec.intermediate_size + h
    if spec.is_moe:
        kept += h * spec.num_local_experts        # router gate: Linear(hidden, num_experts)
    return kept


def param_counts(spec: ModelSpec) -> ParamCounts:
    linears = layer_linears(spec)
    layer_linear = sum(lin.params for lin in linears)
    layer_kept = layer_kept_params(spec)
    layer = layer_linear + layer_kept
    layer_active = sum(lin.active_params for lin in linears) + layer_kept
    embedding = spec.vocab_size * spec.hidden_size
    final_norm = spec.hidden_size
    lm_head = spec.vocab_size * spec.hidden_size
    head_stored = 0 if spec.tied_embeddings else lm_head
    return ParamCounts(
        layer=layer,
        layer_active=layer_active,
        layer_linear=layer_linear,
        layer_kept=layer_kept,
        embedding=embedding,
        final_norm=final_norm,
        lm_head=lm_head,
        total=spec.num_layers * layer + embedding + final_norm + head_stored,
        active_total=spec.num_layers * layer_active + embedding + final_norm + head_stored,
    )
