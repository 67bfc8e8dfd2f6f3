"""The ingress: deploys plans and runs generations through the pipeline, recovering from lost runners.

Greedy decoding with a KV cache per session on every stage: the prompt is one prefill step, then
one token per step. The last stage returns the argmax token. When a runner is lost (missed beats,
dropped connection), the ingress re-plans over the live peers with the same model, policy and
weights, redeploys, and re-runs the request from its prompt; `TextStream` makes sure the caller's
`on_token` never sees text it was already given.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from engine.coordinator.deployment import READY, Deployment, ProgressCallback, footprint_for, replan
from engine.coordinator.links import PeerLink, PeerLost
from engine.coordinator.replacement import TrafficGate
from engine.coordinator.service import Coordinator, new_session_id
from engine.errors import InfeasiblePlan, InvalidInput
from engine.model.footprint import ModelFootprint
from engine.plan import Plan

log = logging.getLogger("prismn.coordinator")

MAX_RECOVERIES = 3
DEPLOY_TIMEOUT_S = 900.0            # a cold GGUF conversion on a slow CPU is the worst case
RESTORE_GRACE_S = 10.0              # after a restart, how long stages may take to rejoin
MAX_NEW_TOKENS = 4096

TokenCallback = Callable[[str], None]


class TextStream:
    """Turns a growing list of token ids into text deltas, never repeating text already delivered.

    The whole sequence is decoded each time (byte-level tokens only make sense together), and a
    trailing U+FFFD (half a UTF-8 character) is held back until the next token completes it. A retry
    re-decodes from its first token and stays silent until it passes what was already sent.
    """

    def __init__(self, tokenizer: Any, on_token: TokenCallback | None) -> None:
        self.tokenizer = tokenizer
        self.on_token = on_token
        self.sent = ""

    def update(self, token_ids: Sequence[int], final: bool = False) -> None:
        if self.tokenizer is None:
            return
        text = self.tokenizer.decode(list(token_ids), skip_special_tokens=True)
        if not final and text.endswith("\ufffd"):
            return
        if len(text) <= len(self.sent):
            return
        if not text.startswith(self.sent):
            log.warning("retried generation diverged from the text already streamed")
            return
        delta, self.sent = text[len(self.sent):], text
        if self.on_token is not None:
            try:
                self.on_token(delta)
            except Exception:        # a GUI callback must not break the generation
                log.exception("on_token callback failed")


class Ingress:
    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator
        self._footprints: dict[tuple[str, str], ModelFootprint] = {}     # (model name, quant) ->
        self._texts: dict[str, tuple[Any, set[int]]] = {}      # model -> (tokenizer or None, eos ids)
        self._recovery_lock = asyncio.Lock()
        self.traffic = TrafficGate()      # requests in flight and their rate; a migration switches between them
        self._started_s = time.monotonic()
        # The loop keeps only weak references to tasks: an unreferenced end_session could vanish mid-send.
        self._background: set[asyncio.Task[None]] = set()

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
        for attempt in range(MAX_RECOVERIES + 1):
            try:
                return await self.coordinator.deploy_once(plan, model, on_progress, timeout_s)
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
        peers = [record.as_peer() for record in self.coordinator.live_peers()]
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
                       on_token: TokenCallback | None = None, chat: bool = True) -> dict[str, Any]:
        """`_generate` through the traffic gate (engine.coordinator.replacement)."""
        async with self.traffic.request() as request:
            result = await self._generate(prompt, max_new_tokens, on_token, chat)
            request["tokens"] = len(result["token_ids"])
            return result

    async def _generate(self, prompt: str | Sequence[int], max_new_tokens: int,
                        on_token: TokenCallback | None = None, chat: bool = True) -> dict[str, Any]:
        """Greedy generation through the deployed pipeline; streams text deltas to `on_token`.

        A text prompt goes through the model's chat template when it has one and `chat` is on (an
        instruct model answers a question asked that way; `python -m engine generate` does the same).

        Returns {text, token_ids, tokens_per_s, g_co2, elapsed_s, recoveries, plan}.
        """
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) \
                or not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
            raise InvalidInput("max_new_tokens", max_new_tokens, f"expected an integer in 1..{MAX_NEW_TOKENS}")
        started_s = time.monotonic()
        dep = await self._ready_deployment()
        tokenizer, eos_ids = await self._text_of(dep.model)
        prompt_ids = _prompt_ids(prompt, tokenizer, chat)
        stream = TextStream(tokenizer, on_token)
        recoveries = 0
        while True:
            attempt_s = time.monotonic()
            try:
                token_ids = await self._run(dep, prompt_ids, max_new_tokens, eos_ids, stream)
                break
            except PeerLost as lost:
                if recoveries == MAX_RECOVERIES:
                    raise
                recoveries += 1
                log.warning("generate: %s; re-planning and retrying from the prompt", lost)
                dep = await self._recover(dep, lost)
        stream.update(token_ids, final=True)
        decode_s = max(time.monotonic() - attempt_s, 1e-9)
        metrics = dep.plan.metrics
        return {
            "text": tokenizer.decode(token_ids, skip_special_tokens=True) if tokenizer is not None else "",
            "token_ids": token_ids,
            "tokens_per_s": len(token_ids) / decode_s,
            # the plan's per-token figure (gCO2 per 1k generated tokens) times the tokens generated
            "g_co2": len(token_ids) * (metrics.g_co2_per_1k_tokens if metrics else 0.0) / 1000.0,
            "elapsed_s": time.monotonic() - started_s,
            "recoveries": recoveries,
            "deployment_id": dep.id,
            "plan": dep.plan,
        }

    async def _run(self, dep: Deployment, prompt_ids: list[int], max_new_tokens: int, eos_ids: set[int],
                   stream: TextStream) -> list[int]:
        links = [self.coordinator.link(stage.peer_id) for stage in dep.plan.stages]
        session_id = new_session_id()
        generated: list[int] = []
        inputs = torch.tensor([prompt_ids], dtype=torch.int64)
        position = 0
        try:
            for _ in range(max_new_tokens):
                tensor = inputs
                for link in links:
                    tensor = await link.forward(session_id, position, tensor)
                token = _token_of(tensor)
                position += inputs.shape[1]
                generated.append(token)
                stream.update(generated)
                if token in eos_ids:
                    break
                inputs = torch.tensor([[token]], dtype=torch.int64)
        finally:
            for link in links:
                task = asyncio.get_running_loop().create_task(_end_session(link, session_id))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        return generated

    async def _text_of(self, model: str) -> tuple[Any, set[int]]:
        if model not in self._texts:
            # resolve_model may convert a GGUF (tens of seconds): never on the event loop
            self._texts[model] = await asyncio.to_thread(_load_text, model)
        return self._texts[model]


def _token_of(tensor: torch.Tensor) -> int:
    """The last stage answers with the greedy token ([1, 1] int64) or, failing that, logits."""
    if not tensor.is_floating_point():
        return int(tensor.reshape(-1)[-1])
    return int(tensor.reshape(-1, tensor.shape[-1])[-1].argmax())


def _prompt_ids(prompt: str | Sequence[int], tokenizer: Any, chat: bool) -> list[int]:
    from engine.generate import prompt_ids

    if isinstance(prompt, str):
        if not prompt:
            raise InvalidInput("prompt", prompt, "expected a non-empty prompt")
        if tokenizer is None:
            raise InvalidInput("prompt", prompt[:40], "this model has no tokenizer: pass token ids")
        ids = prompt_ids(tokenizer, prompt, chat=chat and bool(getattr(tokenizer, "chat_template", None)))
    else:
        ids = list(prompt)
    if not ids or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in ids):
        raise InvalidInput("prompt", ids[:8], "expected a non-empty list of token ids >= 0")
    return ids


def _load_text(model: str) -> tuple[Any, set[int]]:
    """The model source's tokenizer (None for a bare checkpoint: prompts are then token ids) and the
    token ids that end a generation."""
    from transformers import AutoTokenizer

    from engine.runner.model_source import resolve_model

    source = resolve_model(model)
    eos = source.config().get("eos_token_id")
    eos_ids = set(eos if isinstance(eos, list) else [eos] if isinstance(eos, int) else [])
    names = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
    if not any((source.folder / name).is_file() for name in names):
        return None, eos_ids
    tokenizer = AutoTokenizer.from_pretrained(str(source.folder))
    if tokenizer.eos_token_id is not None:
        eos_ids.add(int(tokenizer.eos_token_id))
    return tokenizer, eos_ids


async def _end_session(link: PeerLink, session_id: str) -> None:
    try:
        await link.send({"type": "end_session", "session_id": session_id})
    except PeerLost:
        pass
