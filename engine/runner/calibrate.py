"""A loaded stage times itself: a prefill of a typical prompt and a few warm decode steps.

The coordinator plans live peers with these figures instead of the GPU table (engine.planning.estimates
`StageTiming`). Inputs are synthetic (token 0 / zero hidden states): a step's time does not depend on
the values, only on the shapes.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from engine.runner.stage import StageExecutor

PREFILL_TOKENS = 32        # a short chat question after the template
WARM_STEPS = 2             # not timed: first calls allocate caches and pick kernels
TIMED_STEPS = 6


def time_stage(executor: StageExecutor) -> dict[str, Any]:
    """{prefill_ms, prefill_tokens, decode_ms (median per decode step), head_ms (last stage only)}."""
    session = "calibrate"
    executor.end_session(session)
    try:
        started = time.perf_counter()
        executor.forward(session, 0, _inputs(executor, PREFILL_TOKENS), last_only=True)
        _sync(executor)
        prefill_ms = (time.perf_counter() - started) * 1000.0
        steps = []
        for step in range(WARM_STEPS + TIMED_STEPS):
            started = time.perf_counter()
            executor.forward(session, PREFILL_TOKENS + step, _inputs(executor, 1), last_only=True)
            _sync(executor)
            if step >= WARM_STEPS:
                steps.append((time.perf_counter() - started) * 1000.0)
    finally:
        executor.end_session(session)
    return {"prefill_ms": prefill_ms, "prefill_tokens": PREFILL_TOKENS, "decode_ms": statistics.median(steps),
            "head_ms": _head_ms(executor) if executor.last else None}


def _inputs(executor: StageExecutor, tokens: int) -> torch.Tensor:
    if executor.first:
        return torch.zeros((1, tokens), dtype=torch.int64)
    return torch.zeros((1, tokens, executor.hidden_size), dtype=executor.dtype)


def _head_ms(executor: StageExecutor) -> float:
    """The final norm + lm_head on one position: the part of the last stage no other stage has."""
    stage = executor.stage
    hidden = torch.zeros((1, 1, executor.hidden_size), dtype=executor.dtype, device=executor.device)
    times = []
    with torch.inference_mode():
        for step in range(WARM_STEPS + TIMED_STEPS):
            started = time.perf_counter()
            stage.lm_head(stage.norm(hidden))
            _sync(executor)
            if step >= WARM_STEPS:
                times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


def _sync(executor: StageExecutor) -> None:
    if executor.device.type == "cuda":
        torch.cuda.synchronize(executor.device)
