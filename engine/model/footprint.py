"""What a model costs in memory and compute, per stage: the only model facts planning needs.

Built by `engine.model.sizing.footprint(spec, quant=..., context=..., batch=...)`; consumed by
the pure planning core. All byte counts are exact integers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelFootprint:
    name: str
    num_layers: int
    param_count: int
    quant: str                       # fp32 | bf16 | fp16 | int8 | int4
    layer_bytes: int                 # weights of one decoder layer at `quant`
    embedding_bytes: int             # input embeddings (first stage)
    final_norm_bytes: int            # final norm (last stage)
    lm_head_bytes: int               # lm_head (last stage); with tied embeddings this is a copy
                                     # of the embedding matrix, needed only when last != first
    tied_embeddings: bool
    kv_bytes_per_layer: int          # KV cache of one layer for the whole context and batch
    activation_bytes: int            # per-stage workspace, from the compute dtype
    layer_flops_per_token: int       # ~2 FLOPs per active weight of one layer
    head_flops_per_token: int        # lm_head matmul
    safety_margin: float = 0.10      # fraction of each peer's free VRAM kept unused
    device_kind: str = "cuda"        # cuda | cpu: how int4 weights are held (engine.model.sizing)

    def stage_weight_bytes(self, num_layers: int, *, first: bool, last: bool) -> int:
        """Bytes of the weights a stage holding `num_layers` decoder layers keeps, ends included."""
        total = num_layers * self.layer_bytes
        if first:
            total += self.embedding_bytes
        if last:
            total += self.final_norm_bytes
            # A tied head reuses the embedding matrix only when it already lives on this peer and is
            # held the same way (int8/int4 quantise the head but keep the embedding unquantised).
            if not (self.tied_embeddings and first and self.quant in ("fp32", "bf16", "fp16")):
                total += self.lm_head_bytes
        return total

    def stage_bytes(self, num_layers: int, *, first: bool, last: bool) -> int:
        """Bytes a stage holding `num_layers` decoder layers needs: weights, KV cache and workspace."""
        return (self.stage_weight_bytes(num_layers, first=first, last=last)
                + num_layers * self.kv_bytes_per_layer + self.activation_bytes)
