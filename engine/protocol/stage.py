"""The stage protocol: frames a runner accepts and sends, checked before any compute.

Requests (driver or previous stage -> runner)::

    hello        {token}            first, when the runner was given an access token with its routes
    forward      {request_id, session_id, position, want, route, reply_to, sampling?, trace?}
                 + tensor (ids or hidden)
    end_session  {session_id, route, reply_to}
    ping         {}

`position` is the position of the tensor's first token in the session (0 = prefill). `want` says what
the LAST stage returns: "token" (greedy argmax of the last position, int64 [1, 1]), "logits" (last
position, or every position with `all_positions`), or "hidden" (only meaningful when the route ends
at a middle stage). `route` lists the addresses of the stages still to run after this one: a runner
sends its output as a new `forward` to route[0] with route[1:], so hidden states flow runner to
runner; the stage that finds the route empty delivers a `result` to `reply_to` (the ingress, closing
the tour) or, when `reply_to` is null, back on the channel the request came in on. A runner dials
only the addresses it was assigned (its parent's stdin for `python -m engine generate`, the deploy
message of its coordinator) and refuses a frame whose route or reply_to names any other
(RunnerServer.allow_routes); with none assigned, it answers only on the request's own channel. A
session belongs to the caller that opened it: another caller can neither step nor end it.
`sampling` (engine.decoding.Sampling on the wire) is carried unchanged to the last stage, whose token
picker reads it; `trace` collects one [compute_ms, joules] pair per stage passed.

Replies: `hello` {ok}, `result` {request_id, session_id, dtype, shape} + tensor, `session_ended`
{session_id, ended}, `pong` {info, only to callers that presented the token}, and `error` {reason, field, request_id?} for any frame that was refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.decoding import Sampling
from engine.errors import InvalidInput

WANTS = ("token", "logits", "hidden")
MAX_ROUTE = 64
MAX_ADDRESS_CHARS = 1024
MAX_ID_CHARS = 128
MAX_SAMPLING_KEYS = 32


@dataclass(frozen=True)
class ForwardRequest:
    request_id: int
    session_id: str
    position: int
    want: str
    all_positions: bool
    route: tuple[str, ...]
    reply_to: str | None
    sampling: Sampling | None = None        # how the last stage picks the token (None: greedy)
    trace: tuple[tuple[float, float], ...] = ()

    def header_for_next(self, step: tuple[float, float]) -> dict[str, Any]:
        """Fields of the `forward` this stage sends on to route[0], its own `step` added to the trace."""
        return {"request_id": self.request_id, "session_id": self.session_id, "position": self.position,
                "want": self.want, "all_positions": self.all_positions, "route": list(self.route[1:]),
                "reply_to": self.reply_to, "trace": trace_json(self.trace, step),
                **({"sampling": self.sampling.wire()} if self.sampling is not None else {})}


def trace_json(trace: tuple[tuple[float, float], ...], step: tuple[float, float]) -> list[list[float]]:
    return [[round(a, 4), b] for a, b in (*trace, step)]


def parse_forward(header: dict[str, Any]) -> ForwardRequest:
    return ForwardRequest(
        request_id=_int(header, "request_id", default=0),
        session_id=_session_id(header),
        position=_int(header, "position"),
        want=_choice(header, "want", WANTS, default="token"),
        all_positions=_bool(header, "all_positions", default=False),
        route=_route(header),
        reply_to=_address(header.get("reply_to"), "reply_to"),
        sampling=Sampling.from_wire(header.get("sampling")),
        trace=parse_trace(header.get("trace")),
    )


def parse_trace(value: Any) -> tuple[tuple[float, float], ...]:
    """[[compute_ms, joules], ...] one pair per stage already passed; [] or absent at the first."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_ROUTE:
        raise InvalidInput("trace", _short(value), f"expected a list of at most {MAX_ROUTE} pairs")
    pairs = []
    for i, item in enumerate(value):
        if (not isinstance(item, list) or len(item) != 2
                or any(isinstance(x, bool) or not isinstance(x, int | float) or not 0 <= x < 1e9 for x in item)):
            raise InvalidInput(f"trace[{i}]", _short(item), "expected [compute_ms, joules], numbers >= 0")
        pairs.append((float(item[0]), float(item[1])))
    return tuple(pairs)


def parse_end_session(header: dict[str, Any]) -> tuple[str, tuple[str, ...], str | None]:
    return _session_id(header), _route(header), _address(header.get("reply_to"), "reply_to")


def _session_id(header: dict[str, Any]) -> str:
    value = header.get("session_id")
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_CHARS:
        raise InvalidInput("session_id", _short(value), f"expected a string of 1..{MAX_ID_CHARS} characters")
    return value


def _int(header: dict[str, Any], key: str, default: int | None = None) -> int:
    value = header.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise InvalidInput(key, _short(value), "expected an integer >= 0")
    return value


def _bool(header: dict[str, Any], key: str, default: bool) -> bool:
    value = header.get(key, default)
    if not isinstance(value, bool):
        raise InvalidInput(key, _short(value), "expected true or false")
    return value


def _choice(header: dict[str, Any], key: str, choices: tuple[str, ...], default: str) -> str:
    value = header.get(key, default)
    if value not in choices:
        raise InvalidInput(key, _short(value), f"expected one of {list(choices)}")
    return value


def _route(header: dict[str, Any]) -> tuple[str, ...]:
    value = header.get("route", [])
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_ROUTE:
        raise InvalidInput("route", _short(value), f"expected a list of at most {MAX_ROUTE} addresses")
    return tuple(_address(item, f"route[{i}]") for i, item in enumerate(value))


def _address(value: Any, field: str) -> Any:
    if value is None and field == "reply_to":
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ADDRESS_CHARS:
        raise InvalidInput(field, _short(value), f"expected an address string of 1..{MAX_ADDRESS_CHARS} chars")
    return value


def _short(value: Any) -> Any:
    text = repr(value)
    return value if len(text) <= 80 else text[:77] + "..."
