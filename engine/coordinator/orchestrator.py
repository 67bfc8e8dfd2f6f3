"""The orchestrator: deploys plans and runs generations through the pipeline, recovering from lost runners.

engine.decoding's loop with a KV cache per session on every stage: the prompt is one prefill step,
then one token per step, each step travelling the plan's tour (Coordinator.step). The last stage picks
the token (engine.decoding.pick_token) and returns it. Every generation also reports what it measured
(`measured`): time to first token, decode ms per token, per-stage compute and network time, and
energy / gCO2 by each runner's method. When a runner is lost (missed beats,
dropped connection), the orchestrator re-plans over the live peers with the same model, policy and
weights, redeploys, and re-runs the request from its prompt; `TextStream` makes sure the caller's
`on_token` never sees text it was already given.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from engine.coordinator.deployment import READY, Deployment, ProgressCallback, footprint_for, replan
from engine.coordinator.links import PeerLink, PeerLost
from engine.coordinator.replacement import TrafficGate
from engine.coordinator.service import Coordinator, new_session_id
from engine.coordinator.tour import StepTrace
from engine.decoding import (
    GREEDY,
    Decoded,
    Sampling,
    TextStream,
    chat_ids,
    check_max_tokens,
    check_stop,
    decode,
    load_text,
    prompt_ids,
)
from engine.errors import InfeasiblePlan, InvalidInput
from engine.model.footprint import ModelFootprint
from engine.plan import Plan
from engine.planning.estimates import JOULES_PER_KWH
from engine.planning.types import Ingress

log = logging.getLogger("prismn.coordinator")

MAX_RECOVERIES = 3
DEPLOY_TIMEOUT_S = 900.0            # a cold GGUF conversion on a slow CPU is the worst case
RESTORE_GRACE_S = 10.0              # after a restart, how long stages may take to rejoin

TokenCallback = Callable[[str], None]


class Orchestrator:
    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator
        self._footprints: dict[tuple[str, str], ModelFootprint] = {}     # (model name, quant) ->
        self._texts: dict[str, tuple[Any, frozenset[int]]] = {}      # model -> (tokenizer or None, eos ids)
        self._recovery_lock = asyncio.Lock()
        self.traffic = TrafficGate()      # requests in flight and their rate; a migration switches between them
        self._started_s = time.monotonic()
        # The loop keeps only weak references to tasks: an unreferenced end_session could vanish mid-send.
        self._background: set[asyncio.Task[None]] = set()
        self._readiness: asyncio.Future[Deployment] | None = None

    # ---- deploy ---------------------------------------------------------------------------

    async def deploy(self, plan: Plan, model: str | None = None, on_progress: ProgressCallback | None = None,
                     footprint: ModelFootprint | None = None, timeout_s: float = DEPLOY_TIMEOUT_S) -> Deployment:
        """Deploy `plan`; if a runner dies while loading, re-plan over the live peers and go again.

        A plan made for other peers (a peers file, the demo swarm) is first re-planned over the
        live runners with the same model, ingress, policy and weights.
        """
        if not plan.feasible:
            raise InfeasiblePlan(plan.shortfall_gb or 0.0, plan.shortfall_layers or 0, "the plan is infeasible")
        model = model or plan.model.name
        if footprint is not None:
            self._footprints[(plan.model.name, plan.model.quant)] = footprint
        live = {record.id for record in self.coordinator.live_peers()}
        if any(stage.peer_id not in live for stage in plan.stages):
            plan = await self._replan(plan, model)
        # The tokenizer, chat template and end-of-sequence ids load meanwhile: the first prompt
        # after Deploy is then as fast as the rest.
        text = asyncio.ensure_future(self._text_of(model))
        self._background.add(text)
        text.add_done_callback(self._background.discard)
        for attempt in range(MAX_RECOVERIES + 1):
            try:
                dep = await self.coordinator.deploy_once(plan, model, on_progress, timeout_s)
                try:
                    await text
                except Exception:            # a model without a tokenizer: prompts are token ids
                    log.info("no tokenizer for %s", model)
                return dep
            except PeerLost as lost:
                if attempt == MAX_RECOVERIES:
                    raise
                log.warning("deploy: %s; re-planning", lost)
                self.coordinator.drop_peer(lost)
                plan = await self._replan(plan, model)
        raise AssertionError("unreachable")

    async def _replan(self, plan: Plan, model: str) -> Plan:
        key = (plan.model.name, plan.model.quant)
        if key not in self._footprints:
            self._footprints[key] = await asyncio.to_thread(footprint_for, plan, model)
        footprint = self._footprints[key]
        ingress = Ingress(lat=plan.ingress["lat"], lon=plan.ingress["lon"])
        peers = self.coordinator.peers_for(plan.model.name, ingress)
        return await asyncio.to_thread(replan, plan, footprint, peers)

    async def _recover(self, failed: Deployment, lost: PeerLost) -> Deployment:
        """One recovery for everyone: requests that lost the same deployment share the new one."""
        async with self._recovery_lock:
            current = self.coordinator.deployment
            rejoined = self.coordinator.links.get(lost.peer_id) not in (None, lost.link)
            if current is not None and current.ready and (current is not failed or rejoined) \
                    and all(self.coordinator.registry.is_alive(p) for p in current.status):
                return current          # already replaced, or the runner is back with its stage
            self.coordinator.drop_peer(lost)
            plan = await self._replan(failed.plan, failed.model)
            return await self.deploy(plan, failed.model, failed.on_progress)

    async def ensure_ready(self) -> Deployment:
        """The current deployment once ready, re-planning and redeploying around lost runners."""
        return await self._ready_deployment()

    def readiness(self) -> asyncio.Future[Deployment]:
        """One shared `ensure_ready` for callers that may stop waiting (the API answers 503 after a
        while): a caller giving up does not cancel the re-plan the others wait on."""
        if self._readiness is None or self._readiness.done():
            self._readiness = asyncio.ensure_future(self._ready_deployment())
            self._readiness.add_done_callback(_retrieved)
        return self._readiness

    async def _ready_deployment(self) -> Deployment:
        """The current deployment once ready: waits for stages still loading, and for the runners of
        a restored deployment to rejoin (up to RESTORE_GRACE_S after start), re-planning otherwise."""
        dep = self.coordinator.deployment
        if dep is None:
            raise InvalidInput("deployment", None, "nothing is deployed: deploy a plan first")
        deadline_s = time.monotonic() + DEPLOY_TIMEOUT_S
        while not dep.ready:
            absent = [p for p in dep.status if not self.coordinator.registry.is_alive(p)]
            try:
                if absent and time.monotonic() - self._started_s > RESTORE_GRACE_S:
                    raise PeerLost(absent[0], "did not rejoin")
                if time.monotonic() > deadline_s:
                    raise PeerLost(sorted(p for p, s in dep.status.items() if s != READY)[0],
                                   f"stage not ready within {DEPLOY_TIMEOUT_S:g} s")
                await dep.wait_ready(1.0)
            except TimeoutError:
                continue
            except PeerLost as lost:
                dep = await self._recover(dep, lost)
        return dep

    # ---- generate -------------------------------------------------------------------------

    async def generate(self, prompt: str | Sequence[int], max_new_tokens: int,
                       on_token: TokenCallback | None = None, chat: bool = True,
                       sampling: Sampling = GREEDY, stop: Sequence[str] = ()) -> dict[str, Any]:
        """`_generate` through the traffic gate (engine.coordinator.replacement)."""
        async with self.traffic.request() as request:
            result = await self._generate(prompt, max_new_tokens, on_token, chat, sampling, stop)
            request["tokens"] = len(result["token_ids"])
            return result

    async def _generate(self, prompt: str | Sequence[int], max_new_tokens: int,
                        on_token: TokenCallback | None = None, chat: bool = True,
                        sampling: Sampling = GREEDY, stop: Sequence[str] = ()) -> dict[str, Any]:
        """Generation through the deployed pipeline (engine.decoding's loop); streams text deltas to
        `on_token`.

        `prompt` is text (through the model's chat template when it has one and `chat` is on: an
        instruct model answers a question asked that way; `python -m engine generate` does the same),
        a list of chat messages ({role, content}), or token ids.

        Returns {text, token_ids, prompt_tokens, finish_reason, tokens_per_s, ms_per_token,
        first_token_s, g_co2, elapsed_s, recoveries, deployment_id, plan}.
        """
        check_max_tokens(max_new_tokens, "max_new_tokens")
        stop = check_stop(list(stop) if stop else None)
        sampling = sampling.with_seed(secrets.randbits(63))     # fixed before any retry
        started_s = time.monotonic()
        dep = await self._ready_deployment()
        tokenizer, eos_ids = await self._text_of(dep.model)
        prompt_ids = _prompt_ids(prompt, tokenizer, chat)
        stream = TextStream(tokenizer, on_token, stop)
        recoveries = 0
        while True:
            steps: list[tuple[float, StepTrace]] = []
            try:
                decoded = await self._run(dep, prompt_ids, max_new_tokens, eos_ids, stream, sampling, steps)
                break
            except PeerLost as lost:
                if recoveries == MAX_RECOVERIES:
                    raise
                recoveries += 1
                log.warning("generate: %s; re-planning and retrying from the prompt", lost)
                dep = await self._recover(dep, lost)
        token_ids = decoded.token_ids
        metrics = dep.plan.metrics
        measured = self._measured(dep, steps)
        for stage, compute_ms in zip(dep.plan.stages, measured["stage_compute_ms"], strict=True):
            self.coordinator.measured.record_live(stage.peer_id, dep.plan.model.name, stage.num_layers,
                                                  stage.lm_head, compute_ms)
        return {
            "text": stream.sent if tokenizer is not None else "",
            "token_ids": token_ids,
            "prompt_tokens": len(prompt_ids),
            "finish_reason": decoded.finish_reason,
            "tokens_per_s": len(token_ids) / max(decoded.total_s, 1e-9),
            # measured: wall time of the decode steps after the first token, per token
            "ms_per_token": 1000.0 * (decoded.total_s - decoded.first_token_s) / (len(token_ids) - 1)
            if len(token_ids) > 1 else 1000.0 * decoded.total_s,
            "first_token_s": decoded.first_token_s,
            # the plan's per-token figure (gCO2 per 1k generated tokens) times the tokens generated
            "g_co2": len(token_ids) * (metrics.g_co2_per_1k_tokens if metrics else 0.0) / 1000.0,
            "elapsed_s": time.monotonic() - started_s,
            "recoveries": recoveries,
            "deployment_id": dep.id,
            "plan": dep.plan,
            "measured": measured,
        }

    def _measured(self, dep: Deployment, steps: list[tuple[float, StepTrace]]) -> dict[str, Any]:
        """What this generation measured: the first step is the prefill (time to first token), the
        rest are decode steps; each stage's compute time and energy come from the step traces."""
        stages = dep.plan.stages
        decode_steps = steps[1:]
        decode_ms = [ms for ms, _ in decode_steps]
        compute_ms = [_mean([trace[i][0] for _, trace in decode_steps if len(trace) == len(stages)])
                      for i in range(len(stages))]
        joules = [sum(trace[i][1] for _, trace in steps if len(trace) == len(stages)) for i in range(len(stages))]
        grams = sum(j / JOULES_PER_KWH * s.carbon_g_per_kwh for j, s in zip(joules, stages, strict=True))
        methods = sorted({(self.coordinator.registry.get(s.peer_id) or _NoPeer).energy_method or "unknown"
                          for s in stages})
        mean_decode_ms = _mean(decode_ms)
        cumulative, total = [], 0.0
        for _, trace in steps:
            total += sum(j / JOULES_PER_KWH * s.carbon_g_per_kwh for (_, j), s in zip(trace, stages, strict=False))
            cumulative.append(total)
        return {
            "step_ms": [ms for ms, _ in steps],           # the first is the prefill
            "cumulative_g_co2": cumulative,
            "ttft_s": steps[0][0] / 1000.0 if steps else None,
            "decode_ms_per_token": mean_decode_ms,
            "tokens_per_s": 1000.0 / mean_decode_ms if mean_decode_ms else None,
            "stage_compute_ms": compute_ms,
            "network_ms_per_token": (mean_decode_ms - sum(compute_ms)) if mean_decode_ms is not None else None,
            "stage_joules": joules,
            "g_co2": grams,
            "energy_method": ", ".join(methods),
            "estimated": any("estimated" in m for m in methods),
            "coordinator_frames": self.coordinator.frames.snapshot(),
        }

    async def _run(self, dep: Deployment, prompt_ids: list[int], max_new_tokens: int, eos_ids: frozenset[int],
                   stream: TextStream, sampling: Sampling, steps: list[tuple[float, StepTrace]]) -> Decoded:
        links = [self.coordinator.link(stage.peer_id) for stage in dep.plan.stages]
        session_id = new_session_id()

        async def step(ids: list[int], position: int, wire: dict[str, Any] | None) -> int:
            """One step along the tour: in at stage 1 with the ids, the last stage's token back."""
            started_s = time.perf_counter()
            tensor, trace = await self.coordinator.step(dep, session_id, position,
                                                        torch.tensor([ids], dtype=torch.int64), wire)
            steps.append(((time.perf_counter() - started_s) * 1000.0, trace))
            return _token_of(tensor)

        try:
            return await decode(step, prompt_ids, sampling, max_new_tokens, eos_ids, stream)
        finally:
            for link in links:
                task = asyncio.get_running_loop().create_task(_end_session(link, session_id))
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    async def _text_of(self, model: str) -> tuple[Any, frozenset[int]]:
        if model not in self._texts:
            # resolve_model may convert a GGUF (tens of seconds): never on the event loop
            self._texts[model] = await asyncio.to_thread(_load_text, model)
        return self._texts[model]


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Marks a shared future's exception as seen: the callers still waiting get it themselves."""
    if not future.cancelled():
        future.exception()


class _NoPeer:
    energy_method = None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _token_of(tensor: torch.Tensor) -> int:
    """The last stage answers with the token it picked ([1, 1] int64)."""
    if tensor.is_floating_point():
        raise InvalidInput("result.dtype", str(tensor.dtype), "the last stage must answer with a token id")
    return int(tensor.reshape(-1)[-1])


def _prompt_ids(prompt: str | Sequence[int] | Sequence[dict[str, str]], tokenizer: Any, chat: bool) -> list[int]:
    if isinstance(prompt, str):
        if not prompt:
            raise InvalidInput("prompt", prompt, "expected a non-empty prompt")
        if tokenizer is None:
            raise InvalidInput("prompt", prompt[:40], "this model has no tokenizer: pass token ids")
        ids = prompt_ids(tokenizer, prompt, chat=chat and bool(getattr(tokenizer, "chat_template", None)))
    elif prompt and all(isinstance(m, dict) for m in prompt):
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise InvalidInput("messages", len(prompt), "this model has no chat template: send a text prompt")
        ids = chat_ids(tokenizer, list(prompt))
    else:
        ids = list(prompt)
    if not ids or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in ids):
        raise InvalidInput("prompt", ids[:8], "expected a non-empty list of token ids >= 0")
    return ids


def _load_text(model: str) -> tuple[Any, frozenset[int]]:
    """The model source's tokenizer (None for a bare checkpoint) and its end-of-sequence ids."""
    from engine.model.source import resolve_model

    return load_text(resolve_model(model).folder)


async def _end_session(link: PeerLink, session_id: str) -> None:
    try:
        await link.send({"type": "end_session", "session_id": session_id})
    except PeerLost:
        pass
