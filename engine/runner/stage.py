"""Run one stage: prefill and decode with a KV cache per generation session.

A session is one generation (one prompt and its continuation). Each session owns a transformers
`DynamicCache` holding only this stage's layers; sessions are independent, so several generations can
be interleaved on the same runner. A session's cache is freed when the session ends or has been idle
longer than `idle_timeout_s`.

Continuous batching (`forward_batch`): the one-token decode steps of several sessions run as ONE
forward pass. Each session's new key/value column goes to its own cache and attention reads that
cache; positions stay per session. Inside the pass, linear layers and attention run per session
(engine.runner.rowwise), so each session's output is bit for bit what it computes alone. Prefills (several tokens) run alone. Limits: `max_sessions` sessions and `max_kv_bytes` of KV cache; past
them a NEW session is refused (InvalidInput on `session` / `kv_cache`), running ones go on.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.cache_utils import DynamicCache
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

from engine.errors import InvalidInput
from engine.runner.rowwise import RowWise, RowWiseUnsupported, SessionCaches
from engine.runner.shards import StageModule

MAX_SESSIONS = 64
MAX_KV_BYTES = 4 * 2**30          # KV cache of all sessions together, per runner
MAX_BATCH = 32


@dataclass(frozen=True)
class Step:
    """One forward of one session: token ids [1, T] (first stage) or hidden states [1, T, H]."""

    session: str
    position: int
    inputs: torch.Tensor


@dataclass
class _Session:
    cache: DynamicCache
    next_position: int = 0
    last_used_s: float = field(default_factory=time.monotonic)


class StageExecutor:
    """Thread-safe executor of one `StageModule` for many sessions."""

    def __init__(self, stage: StageModule, idle_timeout_s: float = 600.0,
                 max_sessions: int = MAX_SESSIONS, max_kv_bytes: int = MAX_KV_BYTES) -> None:
        self.stage = stage
        self.config = stage.config
        self.idle_timeout_s = idle_timeout_s
        self.max_sessions = max_sessions
        self.max_kv_bytes = max_kv_bytes
        self.device = next(stage.parameters()).device
        self.dtype = stage.compute_dtype
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        self._names = _KwargNames.of(type(stage.layers[0]).forward)
        # Batched decode needs plain full-attention caches (sliding windows keep their own length) and
        # transformers' SDPA attention (engine.runner.rowwise splits it per session).
        self.can_batch = set(stage.layer_types) == {"full_attention"} and \
            getattr(self.config, "_attn_implementation", None) == "sdpa"

    # ---- sessions -------------------------------------------------------------------------

    @property
    def first(self) -> bool:
        return self.stage.layout.first

    @property
    def last(self) -> bool:
        return self.stage.layout.last

    @property
    def hidden_size(self) -> int:
        return int(self.config.hidden_size)

    def sessions(self) -> list[str]:
        # No lock: a compute round holds it for a whole batch, and the event loop asks this per frame.
        # list(dict) copies the keys in one step under the GIL.
        return sorted(list(self._sessions))

    def active_sessions(self, within_s: float) -> int:
        """Sessions that computed a step in the last `within_s` (read without the lock: a compute
        round may hold it); a session its client abandoned stops counting."""
        now_s = time.monotonic()
        return sum(1 for entry in list(self._sessions.values()) if now_s - entry.last_used_s <= within_s)

    def cache_bytes(self) -> int:
        """Resident bytes of every session's KV cache on this stage."""
        from engine.runner.quantize import tensor_bytes

        with self._lock:
            layers = [layer for entry in self._sessions.values() for layer in entry.cache.layers]
        return tensor_bytes([t for layer in layers for t in (getattr(layer, "keys", None),
                                                             getattr(layer, "values", None))])

    def end_session(self, session: str) -> bool:
        # No lock (the event loop calls this; a round may hold the lock for a whole batch): dict.pop is
        # one step under the GIL, and a round computing this session only updates its orphaned entry.
        return self._sessions.pop(session, None) is not None

    def expire_idle(self, now_s: float | None = None) -> list[str]:
        now_s = time.monotonic() if now_s is None else now_s
        with self._lock:
            stale = [k for k, s in self._sessions.items() if now_s - s.last_used_s > self.idle_timeout_s]
            for key in stale:
                del self._sessions[key]
        return stale

    def _session(self, session: str, start_position: int) -> _Session:
        entry = self._sessions.get(session)
        if entry is None:
            if start_position != 0:
                raise InvalidInput("position", start_position,
                                   f"session {session!r} is unknown here (ended or expired); start at 0")
            if len(self._sessions) >= self.max_sessions:
                raise InvalidInput("session", session, f"runner already holds {self.max_sessions} sessions")
            held = self.kv_bytes()
            if held >= self.max_kv_bytes:
                raise InvalidInput("kv_cache", held, f"runner's KV caches are full ({self.max_kv_bytes} bytes)")
            cache = DynamicCache(config=self.config)
            # The cache holds this stage's layers only; the decoder layers were renumbered to match.
            layout = self.stage.layout
            cache.layers = cache.layers[layout.layer_start:layout.layer_end]
            entry = _Session(cache=cache)
            self._sessions[session] = entry
        elif start_position != entry.next_position:
            raise InvalidInput("position", start_position,
                               f"session {session!r} expects position {entry.next_position} next")
        return entry

    def kv_bytes(self) -> int:
        """Bytes held by every session's KV cache (call with the lock held)."""
        total = 0
        for entry in self._sessions.values():
            for layer in entry.cache.layers:
                for tensor in (getattr(layer, "keys", None), getattr(layer, "values", None)):
                    if isinstance(tensor, torch.Tensor):
                        total += tensor.numel() * tensor.element_size()
        return total

    # ---- compute --------------------------------------------------------------------------

    def forward(self, session: str, start_position: int, inputs: torch.Tensor,
                last_only: bool = False) -> torch.Tensor:
        """Token ids [1, T] (first stage) or hidden states [1, T, H] in; hidden states or logits out.

        `start_position` is the position of the first input token (0 for a prefill); `last_only` keeps
        only the last position's logits on the last stage (what greedy decoding needs).
        """
        self.expire_idle()
        self._check_inputs(inputs)
        limit = int(getattr(self.config, "max_position_embeddings", 0) or 0)
        if limit and start_position + inputs.shape[1] > limit:
            raise InvalidInput("position", start_position + inputs.shape[1],
                               f"the model's context holds {limit} positions")
        with self._lock, torch.no_grad():  # not inference_mode: torchao cannot index int8 expert weights there
            entry = self._session(session, start_position)
            try:
                out = self._run(entry, start_position, inputs, last_only)
            except Exception:
                # A failed step leaves the cache in an unknown state: drop the session.
                self._sessions.pop(session, None)
                raise
            entry.next_position = start_position + inputs.shape[1]
            entry.last_used_s = time.monotonic()
            return out

    def forward_batch(self, steps: list[Step], last_only: bool = True) -> list[torch.Tensor | Exception]:
        """Several sessions' steps; decode steps (one token, a known session) share one forward pass.

        Returns, per step and in order, its output ([1, 1, H] hidden or [1, 1, V] logits) or the
        exception that refused it; one bad step never fails the others.
        """
        if len(steps) == 1 or not self.can_batch:
            return [self._forward_or_error(step, last_only) for step in steps]
        results: list[torch.Tensor | Exception | None] = [None] * len(steps)
        batch: list[int] = []
        for index, step in enumerate(steps):
            if step.inputs.shape[1] == 1 and step.position > 0 and \
                    step.session not in {steps[i].session for i in batch}:
                batch.append(index)
            else:
                results[index] = self._forward_or_error(step, last_only)
        if len(batch) == 1:
            results[batch[0]] = self._forward_or_error(steps[batch[0]], last_only)
        elif batch:
            for index, out in zip(batch, self._decode_batch([steps[i] for i in batch]), strict=True):
                results[index] = out
        return results

    def _forward_or_error(self, step: Step, last_only: bool) -> torch.Tensor | Exception:
        try:
            return self.forward(step.session, step.position, step.inputs, last_only=last_only)
        except Exception as exc:            # noqa: BLE001 - handed back to that step's caller
            return exc

    def _decode_batch(self, steps: list[Step]) -> list[torch.Tensor | Exception]:
        self.expire_idle()
        results: list[torch.Tensor | Exception | None] = [None] * len(steps)
        with self._lock, torch.inference_mode():
            ready: list[tuple[int, _Session]] = []
            for index, step in enumerate(steps):
                try:
                    self._check_inputs(step.inputs)
                    ready.append((index, self._session(step.session, step.position)))
                except InvalidInput as exc:
                    results[index] = exc
            if ready:
                try:
                    outputs = self._run_batch([e for _, e in ready], [steps[i].inputs for i, _ in ready])
                except Exception as exc:
                    for index, _ in ready:      # caches may be half updated: drop those sessions
                        self._sessions.pop(steps[index].session, None)
                        results[index] = exc
                else:
                    now = time.monotonic()
                    for (index, entry), out in zip(ready, outputs, strict=True):
                        entry.next_position += 1
                        entry.last_used_s = now
                        results[index] = out
        return results  # type: ignore[return-value]

    def _run_batch(self, entries: list[_Session], inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """One forward pass for B one-token steps of B sessions, each with its own cache length."""
        stage = self.stage
        if self.first:
            hidden = stage.embed_tokens(torch.cat(inputs).to(self.device).long())        # [B, 1, H]
        else:
            hidden = torch.cat(inputs).to(self.device, self.dtype)
        lengths = torch.tensor([e.next_position for e in entries], device=self.device)
        position_ids = lengths.unsqueeze(1)                                             # [B, 1]
        position_embeddings = stage.rotary_emb(hidden, position_ids)
        # Each session's keys and values go straight to its own cache (SessionCaches) and attention
        # reads them from there, per session (RowWise): no padded copy of the caches. No mask:
        # transformers then calls attention exactly as for one session alone.
        rows = RowWise()
        extra: dict[str, Any] = {self._names.layer_cache: SessionCaches([e.cache for e in entries], rows)}
        if self._names.layer_cache_position:
            extra["cache_position"] = torch.tensor([int(lengths.max())], device=self.device)
        with rows:
            for layer in stage.layers:
                hidden = layer(hidden, attention_mask=None, position_embeddings=position_embeddings,
                               position_ids=position_ids, use_cache=True, **extra)
                if isinstance(hidden, tuple):
                    hidden = hidden[0]
            if self.last:
                hidden = stage.logits(hidden)
        if rows.attention_calls != len(stage.layers):
            raise RowWiseUnsupported(f"{rows.attention_calls} attention calls for {len(stage.layers)} layers")
        return [hidden[row:row + 1] for row in range(len(entries))]

    def _check_inputs(self, inputs: torch.Tensor) -> None:
        if self.first:
            if inputs.dim() != 2 or inputs.shape[0] != 1 or inputs.shape[1] < 1:
                raise InvalidInput("tensor.shape", list(inputs.shape), "first stage expects token ids [1, T]")
            if inputs.dtype not in (torch.int64, torch.int32):
                raise InvalidInput("tensor.dtype", str(inputs.dtype), "token ids must be int64 or int32")
            if inputs.numel() and (int(inputs.min()) < 0 or int(inputs.max()) >= self.config.vocab_size):
                raise InvalidInput("tensor", "token id", f"expected ids in 0..{self.config.vocab_size - 1}")
        else:
            shape = list(inputs.shape)
            if inputs.dim() != 3 or shape[0] != 1 or shape[1] < 1 or shape[2] != self.hidden_size:
                raise InvalidInput("tensor.shape", shape, f"expected hidden states [1, T, {self.hidden_size}]")
            if not inputs.is_floating_point():
                raise InvalidInput("tensor.dtype", str(inputs.dtype), "hidden states must be floating point")

    def _run(self, entry: _Session, start_position: int, inputs: torch.Tensor, last_only: bool) -> torch.Tensor:
        stage = self.stage
        inputs = inputs.to(self.device)
        if self.first:
            hidden = stage.embed_tokens(inputs.long())
        else:
            hidden = inputs.to(self.dtype)
        length = hidden.shape[1]
        position_ids = torch.arange(start_position, start_position + length, device=self.device).unsqueeze(0)
        cache_position = position_ids[0]
        masks = self._masks(hidden, entry.cache, position_ids, cache_position)
        position_embeddings = stage.rotary_emb(hidden, position_ids)
        extra: dict[str, Any] = {self._names.layer_cache: entry.cache}
        if self._names.layer_cache_position:
            extra["cache_position"] = cache_position
        for layer, layer_type in zip(stage.layers, stage.layer_types, strict=True):
            hidden = layer(hidden, attention_mask=masks[layer_type], position_embeddings=position_embeddings,
                           position_ids=position_ids, use_cache=True, **extra)
            if isinstance(hidden, tuple):     # older transformers return (hidden_states, ...)
                hidden = hidden[0]
        if not self.last:
            return hidden
        if last_only:
            hidden = hidden[:, -1:, :]
        return stage.logits(hidden)

    def _masks(self, hidden: torch.Tensor, cache: DynamicCache, position_ids: torch.Tensor,
               cache_position: torch.Tensor) -> dict:
        masks = {}
        for layer_type in set(self.stage.layer_types):
            function = (create_sliding_window_causal_mask if layer_type == "sliding_attention"
                        else create_causal_mask)
            masks[layer_type] = function(**_mask_kwargs(function, self.config, hidden, cache, position_ids,
                                                        cache_position))
        return masks


# ---- transformers version differences -------------------------------------------------------
# transformers 5.24 (this repo's pin) calls the KV cache `cache`, and its mask builders take
# `inputs_embeds`; earlier 5.x releases (the GPU machines' 5.17) use `past_key_values`,
# `input_embeds` and a `cache_position` argument. Read the real signatures instead of guessing.

@dataclass(frozen=True)
class _KwargNames:
    layer_cache: str
    layer_cache_position: bool

    @classmethod
    def of(cls, layer_forward) -> _KwargNames:
        params = inspect.signature(layer_forward).parameters
        cache = next((n for n in ("cache", "past_key_values", "past_key_value") if n in params), "cache")
        return cls(layer_cache=cache, layer_cache_position="cache_position" in params)


@functools.cache
def _parameters(function) -> frozenset[str]:
    return frozenset(inspect.signature(function).parameters)


def _mask_kwargs(function, config, hidden, cache, position_ids, cache_position) -> dict[str, Any]:
    params = _parameters(function)
    kwargs: dict[str, Any] = {"config": config, "attention_mask": None, "position_ids": position_ids}
    kwargs["inputs_embeds" if "inputs_embeds" in params else "input_embeds"] = hidden
    kwargs["cache" if "cache" in params else "past_key_values"] = cache
    if "cache_position" in params:
        kwargs["cache_position"] = cache_position
    return kwargs
