"""The one decoding path: sampling, the last stage's token picker, the end-of-sequence rule, stop
strings, streamed text, and the loop that drives any transport.

A request is decoded in these steps:
1. validate: `Sampling.create` / `check_max_tokens` / `check_stop` (InvalidInput names field and value);
   `Sampling.with_seed` fixes a seed once per request, so a retry after a failover draws the same tokens.
2. loop (`decode`): the prompt goes out as one prefill step, then one token per step, each through
   `step(ids, position, sampling)` — the transport (coordinator links, a runner chain) plugs in there.
3. pick: the LAST stage turns its logits into a token with `pick_token` (greedy at temperature 0,
   else a draw seeded by (seed, position)); only the token travels back.
4. stop: at an end-of-sequence id (`eos_token_ids`: one rule for every caller), at a stop string, or
   after `max_tokens`.
5. stream: `TextStream` hands out text deltas once, holding back half characters and what could be
   the start of a stop string.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from engine.errors import InvalidInput

log = logging.getLogger("prismn.decoding")

MAX_NEW_TOKENS = 4096
MAX_TEMPERATURE = 2.0                     # OpenAI's range
MAX_TOP_K = 1_000_000
MAX_STOP_STRINGS = 4                      # OpenAI's limit
MAX_STOP_CHARS = 256
SEED_MASK = 2**63 - 1

TextCallback = Callable[[str], None]
# (token ids to feed, session position of the first of them, sampling for the last stage) -> token id
Step = Callable[[list[int], int, "dict[str, Any] | None"], Awaitable[int]]


# ---- sampling ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sampling:
    """How the last stage picks a token. temperature 0 = greedy (argmax); top_k 0 = off; top_p 1 = off."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None

    @classmethod
    def create(cls, temperature: Any = 0.0, top_p: Any = 1.0, top_k: Any = 0, seed: Any = None,
               prefix: str = "") -> Sampling:
        """Checked values (as a client sends them); errors name `prefix + field`."""
        return cls(temperature=_number(temperature, prefix + "temperature", 0.0, MAX_TEMPERATURE),
                   top_p=_number(top_p, prefix + "top_p", 0.0, 1.0, low_open=True),
                   top_k=_integer(top_k, prefix + "top_k", 0, MAX_TOP_K),
                   seed=None if seed is None else _integer(seed, prefix + "seed", -2**63, 2**64 - 1) & SEED_MASK)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def with_seed(self, fallback_seed: int) -> Sampling:
        """This sampling with a fixed seed (the caller's, else `fallback_seed`): fixed once per request."""
        return self if self.seed is not None or self.greedy else replace(self, seed=fallback_seed & SEED_MASK)

    def wire(self) -> dict[str, Any] | None:
        """The small JSON dict a step frame carries to the last stage (None = greedy)."""
        if self.greedy:
            return None
        return {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k, "seed": self.seed or 0}

    @classmethod
    def from_wire(cls, value: Any) -> Sampling | None:
        """Parse a frame's `sampling` field (untrusted); None or {} = greedy."""
        if value is None:
            return None
        if not isinstance(value, dict):
            raise InvalidInput("sampling", type(value).__name__, "expected an object")
        extra = sorted(set(value) - {"temperature", "top_p", "top_k", "seed"})
        if extra:
            raise InvalidInput(f"sampling.{extra[0]}", "...", "unexpected field")
        return cls.create(value.get("temperature", 0.0), value.get("top_p", 1.0), value.get("top_k", 0),
                          value.get("seed"), prefix="sampling.")


GREEDY = Sampling()


def pick_token(logits: torch.Tensor, sampling: Sampling | None, position: int) -> int:
    """THE token choice of the last stage: `logits` of one position ([vocab]) -> token id.

    Greedy is argmax (what transformers' greedy generate does). Otherwise temperature, then top-k, then
    top-p (the smallest set of most likely tokens whose mass reaches top_p; transformers' order), then
    one draw from a generator seeded by (seed, position): the same request draws the same tokens on any
    runner, in any batch, and again after a retry.
    """
    logits = logits.reshape(-1)
    if sampling is None or sampling.greedy:
        return int(logits.argmax())
    return int(torch.multinomial(sampling_probs(logits, sampling), 1, generator=_generator(sampling, position)))


def sampling_probs(logits: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """The distribution `pick_token` draws from (float32, CPU): softmax(logits / T) with top-k / top-p."""
    scores = logits.reshape(-1).detach().float().cpu() / sampling.temperature
    if 0 < sampling.top_k < scores.numel():
        kth = torch.topk(scores, sampling.top_k).values[-1]
        scores = scores.masked_fill(scores < kth, -math.inf)
    probs = torch.softmax(scores, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        before = torch.cumsum(sorted_probs, dim=0) - sorted_probs       # mass of the more likely tokens
        drop = before >= sampling.top_p
        drop[0] = False
        probs = probs.clone()
        probs[order[drop]] = 0.0
        probs = probs / probs.sum()
    return probs


def _generator(sampling: Sampling, position: int) -> torch.Generator:
    digest = hashlib.blake2b(f"{sampling.seed or 0}:{position}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & SEED_MASK)


# ---- request limits ---------------------------------------------------------------------------

def check_max_tokens(value: Any, field: str = "max_tokens") -> int:
    return _integer(value, field, 1, MAX_NEW_TOKENS)


def check_stop(value: Any, field: str = "stop") -> tuple[str, ...]:
    """None, one string or a list of up to 4 non-empty strings (OpenAI's `stop`)."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or len(items) > MAX_STOP_STRINGS:
        raise InvalidInput(field, _short(value), f"expected a string or a list of at most {MAX_STOP_STRINGS}")
    for index, item in enumerate(items):
        if not isinstance(item, str) or not 1 <= len(item) <= MAX_STOP_CHARS:
            raise InvalidInput(f"{field}[{index}]" if not isinstance(value, str) else field, _short(item),
                               f"expected a string of 1..{MAX_STOP_CHARS} characters")
    return tuple(items)


# ---- end of sequence --------------------------------------------------------------------------

def eos_token_ids(folder: Path | None, tokenizer: Any = None) -> frozenset[int]:
    """THE end-of-sequence rule: every id named by config.json, generation_config.json and the tokenizer.

    A model whose files disagree (one names <|im_end|>, another <|endoftext|>) stops at either: after
    an end-of-sequence token a model's text is over, whichever file named it.
    """
    ids: set[int] = set()
    for name in ("config.json", "generation_config.json"):
        path = Path(folder) / name if folder is not None else None
        if path is not None and path.is_file():
            try:
                value = json.loads(path.read_text()).get("eos_token_id")
            except (OSError, ValueError, AttributeError):
                continue
            ids.update(v for v in (value if isinstance(value, list) else [value])
                       if isinstance(v, int) and not isinstance(v, bool))
    if tokenizer is not None and getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(int(tokenizer.eos_token_id))
    return frozenset(ids)


# ---- text in ----------------------------------------------------------------------------------

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def load_text(folder: Path) -> tuple[Any, frozenset[int]]:
    """A model folder's tokenizer (None for a bare checkpoint: prompts are then token ids) and its
    end-of-sequence ids."""
    folder = Path(folder)
    tokenizer = load_tokenizer(folder) if any((folder / n).is_file() for n in TOKENIZER_FILES) else None
    return tokenizer, eos_token_ids(folder, tokenizer)


def prompt_ids(tokenizer: Any, prompt: str, chat: bool) -> list[int]:
    """Token ids of a text prompt; `chat` wraps it as one user turn with the chat template."""
    if chat:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return list(tokenizer(prompt)["input_ids"])


def chat_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a whole conversation through the chat template, ready for the assistant's turn."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


# ---- streamed text ----------------------------------------------------------------------------

class TextStream:
    """Turns a growing list of token ids into text deltas, never repeating text already delivered.

    The whole sequence is decoded each time (byte-level tokens only make sense together). Held back
    until the next token: a trailing U+FFFD (half a UTF-8 character) and a tail that could be the start
    of a stop string. A stop string ends the text before it (it is not part of the answer, as in
    OpenAI's API). A retry re-decodes from its first token and stays silent until it passes what was
    already sent.
    """

    def __init__(self, tokenizer: Any, on_text: TextCallback | None = None, stop: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.on_text = on_text
        self.stop = tuple(stop)
        self.sent = ""
        self.stopped = False

    def update(self, token_ids: Sequence[int], final: bool = False) -> bool:
        """Deliver new text; True once a stop string has been reached (the generation is over)."""
        if self.tokenizer is None:
            return False
        text = self.tokenizer.decode(list(token_ids), skip_special_tokens=True)
        cut = min((i for i in (text.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            text, final, self.stopped = text[:cut], True, True
        if not final:
            if text.endswith("\ufffd"):
                return False
            text = text[:len(text) - _stop_prefix_len(text, self.stop)]
        if len(text) > len(self.sent):
            if not text.startswith(self.sent):
                log.warning("retried generation diverged from the text already streamed")
            else:
                delta, self.sent = text[len(self.sent):], text
                self._emit(delta)
        return self.stopped

    def _emit(self, delta: str) -> None:
        if self.on_text is None:
            return
        try:
            self.on_text(delta)
        except Exception:        # a GUI or HTTP callback must not break the generation
            log.exception("on_text callback failed")


def _stop_prefix_len(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of a stop string."""
    best = 0
    for stop in stops:
        for length in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:length]):
                best = length
                break
    return best


# ---- the loop ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Decoded:
    token_ids: list[int]
    finish_reason: str            # "stop" (end-of-sequence token or stop string) | "length"
    first_token_s: float          # time to the first token (the prefill step)
    total_s: float


async def decode(step: Step, prompt_ids: Sequence[int], sampling: Sampling, max_tokens: int,
                 eos_ids: frozenset[int] | set[int], stream: TextStream | None = None) -> Decoded:
    """Prefill, then one token per step until an end-of-sequence id (kept in `token_ids`, as
    transformers does), a stop string (`stream`), or `max_tokens`."""
    started_s = time.perf_counter()
    wire = sampling.wire()
    generated: list[int] = []
    ids, position = list(prompt_ids), 0
    first_token_s = 0.0
    finish = "length"
    for _ in range(max_tokens):
        token = int(await step(ids, position, wire))
        if not generated:
            first_token_s = time.perf_counter() - started_s
        position += len(ids)
        generated.append(token)
        if token in eos_ids:
            finish = "stop"
            break
        if stream is not None and stream.update(generated):
            finish = "stop"
            break
        ids = [token]
    if stream is not None:
        stream.update(generated, final=True)
    return Decoded(generated, finish, first_token_s, time.perf_counter() - started_s)


# ---- checks -----------------------------------------------------------------------------------

def _number(value: Any, field: str, low: float, high: float, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not (low < value if low_open else low <= value) or value > high:
        bound = f"({low:g}, {high:g}]" if low_open else f"[{low:g}, {high:g}]"
        raise InvalidInput(field, _short(value), f"expected a number in {bound}")
    return float(value)


def _integer(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(field, _short(value), f"expected an integer in {low}..{high}")
    return value


def _short(value: Any) -> Any:
    text = repr(value)
    return value if len(text) <= 80 else text[:77] + "..."
