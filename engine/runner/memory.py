"""What a loaded stage really holds: weights, KV cache and workspace, measured for its ready message.

- weight_bytes: the storages behind the stage's parameters (quantised tensors opened to their int
  data, scales and zero points), each counted once.
- kv_cache_bytes: every open session's cache (0 at start-up); kv_cache_bytes_per_token: measured on
  a warm-up prefill of `WARMUP_TOKENS` tokens in a throw-away session.
- workspace_bytes: on CUDA, the allocator's peak during that warm-up minus what it held before and the
  warm-up's own cache. CPU allocations are not tracked per tensor, so on CPU it is null (not measured).
"""

from __future__ import annotations

from typing import Any

import torch

from engine.runner.quantize import module_weight_bytes
from engine.runner.stage import StageExecutor

WARMUP_TOKENS = 16
_WARMUP_SESSION = "prismn-memory-warmup"


def measure_memory(executor: StageExecutor, warmup_tokens: int = WARMUP_TOKENS) -> dict[str, Any]:
    stage = executor.stage
    tokens = max(1, min(warmup_tokens, int(getattr(executor.config, "max_position_embeddings", 0) or warmup_tokens)))
    cuda = executor.device.type == "cuda"
    base_cache = executor.cache_bytes()
    if cuda:
        torch.cuda.synchronize(executor.device)
        torch.cuda.reset_peak_memory_stats(executor.device)
        before = torch.cuda.memory_allocated(executor.device)
    if executor.first:
        inputs = torch.zeros((1, tokens), dtype=torch.int64)
    else:
        inputs = torch.zeros((1, tokens, executor.hidden_size), dtype=executor.dtype)
    try:
        executor.forward(_WARMUP_SESSION, 0, inputs, last_only=True)
        warmup_cache = executor.cache_bytes() - base_cache
        workspace = None
        if cuda:
            torch.cuda.synchronize(executor.device)
            workspace = max(0, torch.cuda.max_memory_allocated(executor.device) - before - warmup_cache)
    finally:
        executor.end_session(_WARMUP_SESSION)
    return {
        "quant": getattr(stage, "quant", None),
        "weight_bytes": module_weight_bytes(stage),
        "kv_cache_bytes": executor.cache_bytes(),
        "kv_cache_bytes_per_token": warmup_cache // tokens,
        "workspace_bytes": workspace,
        "measured": f"tensor storages; KV and workspace over a {tokens}-token warm-up prefill"
                    + ("" if cuda else "; workspace not measured on CPU"),
    }
