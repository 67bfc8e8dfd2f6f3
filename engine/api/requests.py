"""Request bodies of /v1/chat/completions and /v1/completions, checked field by field.

Every bad value raises engine.errors.InvalidInput naming the field (OpenAI's `param`) and the value;
the app turns it into a 400 in OpenAI's error shape. Fields OpenAI clients send that do not change
the answer here (user, metadata, logit_bias when empty, ...) are accepted and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.decoding import Sampling, check_max_tokens, check_stop
from engine.errors import InvalidInput

DEFAULT_MAX_TOKENS = 256
MAX_MESSAGES = 256
MAX_PROMPT_CHARS = 200_000
ROLES = ("system", "user", "assistant", "developer", "tool")
UNSUPPORTED = ("tools", "functions", "logprobs", "echo", "best_of", "suffix")


@dataclass(frozen=True)
class GenerationRequest:
    model: str
    prompt: str | list[int] | list[dict[str, str]]       # text, token ids, or chat messages
    chat: bool                                            # through the chat template
    sampling: Sampling
    max_tokens: int
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool


def parse_chat(body: Any) -> GenerationRequest:
    body = _object(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_MESSAGES:
        raise InvalidInput("messages", _short(messages), f"expected a list of 1..{MAX_MESSAGES} messages")
    turns = [_message(m, f"messages[{i}]") for i, m in enumerate(messages)]
    return _common(body, turns, chat=True)


def parse_completion(body: Any) -> GenerationRequest:
    body = _object(body)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]                      # a batch of one
    if isinstance(prompt, str):
        if not 1 <= len(prompt) <= MAX_PROMPT_CHARS:
            raise InvalidInput("prompt", _short(prompt), f"expected 1..{MAX_PROMPT_CHARS} characters")
    elif not (isinstance(prompt, list) and prompt
              and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in prompt)):
        raise InvalidInput("prompt", _short(prompt), "expected a string, or a list of token ids >= 0")
    return _common(body, prompt, chat=False)


def _common(body: dict[str, Any], prompt: Any, chat: bool) -> GenerationRequest:
    model = body.get("model")
    if not isinstance(model, str) or not 1 <= len(model) <= 512:
        raise InvalidInput("model", _short(model), "expected the name of the deployed model")
    for name in UNSUPPORTED:
        if body.get(name) not in (None, False, [], 0, ""):
            raise InvalidInput(name, _short(body[name]), "not supported by this server")
    n = body.get("n", 1)
    if n != 1 or isinstance(n, bool):
        raise InvalidInput("n", _short(n), "only n = 1 is supported")
    sampling = Sampling.create(_default(body, "temperature", 1.0), _default(body, "top_p", 1.0),
                               _default(body, "top_k", 0), body.get("seed"))
    max_key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = check_max_tokens(_default(body, max_key, DEFAULT_MAX_TOKENS), max_key)
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise InvalidInput("stream", _short(stream), "expected true or false")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise InvalidInput("stream_options", _short(options), "expected an object")
    return GenerationRequest(model=model, prompt=prompt, chat=chat, sampling=sampling, max_tokens=max_tokens,
                             stop=check_stop(body.get("stop")), stream=stream,
                             include_usage=bool(options.get("include_usage")))


def _message(message: Any, where: str) -> dict[str, str]:
    if not isinstance(message, dict):
        raise InvalidInput(where, _short(message), "expected an object with role and content")
    role = message.get("role")
    if role not in ROLES:
        raise InvalidInput(f"{where}.role", _short(role), f"expected one of {list(ROLES)}")
    content = message.get("content")
    if isinstance(content, list):                 # [{"type": "text", "text": ...}, ...]
        parts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise InvalidInput(f"{where}.content[{j}]", _short(part), "only text parts are supported")
            parts.append(part["text"])
        content = "".join(parts)
    if not isinstance(content, str) or len(content) > MAX_PROMPT_CHARS:
        raise InvalidInput(f"{where}.content", _short(content), f"expected text of at most {MAX_PROMPT_CHARS} chars")
    return {"role": "system" if role == "developer" else role, "content": content}


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput("body", type(body).__name__, "expected a JSON object")
    return body


def _default(body: dict[str, Any], key: str, default: Any) -> Any:
    value = body.get(key)
    return default if value is None else value


def _short(value: Any) -> Any:
    text = repr(value)
    return value if len(text) <= 80 else text[:77] + "..."
