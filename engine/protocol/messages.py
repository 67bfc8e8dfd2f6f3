"""The coordinator <-> runner message schema: every header that crosses the wire is checked here.

A message is one transport frame: a JSON header (``{"type": ..., fields}``) and an optional raw
payload (tensor bytes; dtype and shape in the header). `validate(header, payload)` returns the
header with numbers normalised or raises `InvalidInput` naming the field; unknown types, missing or
extra fields, non-finite numbers, out-of-range values and payloads over a type's limit are refused.
Nothing here is ever pickled or evaluated.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.errors import InvalidInput
from engine.model.sizing import QUANTS
from engine.transport.frames import DTYPES, FrameLimits, check_tensor_fields
from engine.validate import finite_number

PROTOCOL_VERSION = 2                    # 2: the join handshake of engine.protocol.auth
MISSED_BEATS = 3                        # beats a side may miss before it gives the other up
MAX_HEADER_BYTES = 16 * 1024            # JSON header; the largest (join) is well under 1 KiB
MAX_TENSOR_BYTES = 256 * 2**20          # hidden states of a long prompt on a wide model
# What both ends' transports enforce before reading a frame: larger lengths drop the connection.
FRAME_LIMITS = FrameLimits(max_header_bytes=MAX_HEADER_BYTES, max_payload_bytes=MAX_TENSOR_BYTES)
MAX_TEXT_CHARS = 2000                   # error strings, names
MAX_TENSOR_DIMS = 4

HEX_PATTERN = re.compile(r"^[0-9a-f]*$")
PEER_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
# what a stage may exchange: token ids in, hidden states / logits out
STAGE_DTYPES = ("float32", "float16", "bfloat16", "int64", "int32")


MAX_ADDRESS_CHARS = 2048               # an iroh endpoint ticket with a few direct addresses
MAX_HOPS = 64


@dataclass(frozen=True)
class Field:
    kind: str                           # "str" | "float" | "int" | "bool" | "shape" | "stage" | "hop"
                                        # | "hops" | "addresses" | "trace" | "object"
    required: bool = True
    nullable: bool = False
    low: float | None = None            # inclusive bounds for numbers, length bounds for strings
    high: float | None = None
    check: Callable[[Any], str | None] | None = None   # extra rule -> reason or None


def _quant_rule(value: str) -> str | None:
    return None if value in QUANTS else f"expected one of {list(QUANTS)}"


def _peer_id_rule(value: str) -> str | None:
    return None if PEER_ID_PATTERN.match(value) else "expected 1-64 of A-Z a-z 0-9 . _ : - (starting alnum)"


def _hex_rule(chars: int) -> Callable[[str], str | None]:
    def rule(value: str) -> str | None:
        return None if len(value) == chars and HEX_PATTERN.match(value) else f"expected {chars} hex digits"
    return rule


def _printable_rule(value: str) -> str | None:
    """Names and GPU models reach terminals, logs and the GUI: no control characters (newlines, ANSI
    escapes) and no lone surrogates."""
    bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cs")), None)
    return None if bad is None else f"contains the control character or lone surrogate {ascii(bad)}"


def _dtype_rule(value: str) -> str | None:
    return None if value in STAGE_DTYPES and value in DTYPES else f"expected one of {list(STAGE_DTYPES)}"


PEER_ID = Field("str", low=1, high=64, check=_peer_id_rule)
DEPLOYMENT_ID = Field("str", low=1, high=64, check=_peer_id_rule)
SESSION_ID = Field("str", low=1, high=64, check=_peer_id_rule)
REQUEST_ID = Field("int", low=0, high=2**53)
LAT = Field("float", low=-90.0, high=90.0)
LON = Field("float", low=-180.0, high=180.0)
GB_VALUE = Field("float", low=0.0, high=1e6)
TEXT = Field("str", low=0, high=MAX_TEXT_CHARS)
DTYPE = Field("str", low=1, high=16, check=_dtype_rule)
SHAPE = Field("shape")
ADDRESS = Field("str", low=1, high=MAX_ADDRESS_CHARS)
MS = Field("float", nullable=True, required=False, low=0.0, high=1e7)
# where a stage sends: {address, lat, lon} (the place feeds the emulated WAN)
HOP = Field("hop")
TOKEN = Field("str", required=False, low=16, high=256)      # a pipeline's access token
NONCE = Field("str", low=64, high=64, check=_hex_rule(64))
PUBLIC_KEY = Field("str", low=64, high=64, check=_hex_rule(64))
SIGNATURE = Field("str", low=128, high=128, check=_hex_rule(128))
_METRICS = {
    "gpu": Field("str", nullable=True, low=0, high=128, check=_printable_rule),
    "total_vram_gb": GB_VALUE,
    "free_vram_gb": GB_VALUE,
    "utilization_pct": Field("float", nullable=True, low=0.0, high=100.0),
    "power_w": Field("float", nullable=True, low=0.0, high=1e5),
}
_STAGE = {
    "deployment_id": DEPLOYMENT_ID,
    "model": Field("str", low=1, high=512),
    "layer_start": Field("int", low=0, high=10_000),
    "layer_end": Field("int", low=1, high=10_000),
    "embeddings": Field("bool"),
    "lm_head": Field("bool"),
    # how the runner holds the stage's weights: the plan's quantisation (null: the runner's --dtype)
    "quant": Field("str", required=False, nullable=True, low=1, high=8, check=_quant_rule),
}
STAGE_FIELDS = tuple(_STAGE)             # what identifies a stage's weights (a runner's `loaded`)

# type -> (fields, payload limit in bytes). Both directions share one table: each side accepts
# only the types the other sends (see RUNNER_TO_COORDINATOR / COORDINATOR_TO_RUNNER).
SCHEMAS: dict[str, tuple[dict[str, Field], int]] = {
    # runner -> coordinator
    "join_hello": ({"protocol": Field("int", low=1, high=1000), "nonce": NONCE}, 0),
    "join": ({
        "protocol": Field("int", low=1, high=1000),
        "key": PUBLIC_KEY,                       # the runner's Ed25519 key: the peer id is bound to it
        "proof": Field("str", low=64, high=64, check=_hex_rule(64)),   # HMAC(join secret, transcript)
        "signature": SIGNATURE,                  # the runner key's signature of the transcript
        "peer_id": PEER_ID,
        "name": Field("str", low=0, high=64, check=_printable_rule),
        "lat": LAT,
        "lon": LON,
        "carbon_g_per_kwh": Field("float", nullable=True, low=0.0, high=5000.0),
        "tflops": Field("float", nullable=True, low=0.0, high=1e5),
        # a stage the runner still holds from before a coordinator restart
        "loaded": Field("stage", nullable=True, required=False),
        # where the other stages reach this runner (its own listening node)
        "address": Field("str", nullable=True, required=False, low=1, high=MAX_ADDRESS_CHARS),
        "emulated_wan": Field("bool", required=False),
        "wan_bandwidth_mbps": Field("float", nullable=True, required=False, low=0.0, high=1e7),
        "energy_method": Field("str", required=False, low=1, high=64),
        **_METRICS,
    }, 0),
    "heartbeat": (dict(_METRICS), 0),
    "load_progress": ({"deployment_id": DEPLOYMENT_ID, "loaded_bytes": Field("int", low=0, high=2**50),
                       "total_bytes": Field("int", low=0, high=2**50)}, 0),
    # the stage's own timing after loading (engine.runner.calibrate)
    "ready": ({"deployment_id": DEPLOYMENT_ID, "decode_ms": MS, "head_ms": MS, "prefill_ms": MS,
               "prefill_tokens": Field("int", required=False, low=0, high=2**31)}, 0),
    # round trips measured to the next stage and to the ingress (null: no answer)
    "measured_rtt": ({"deployment_id": DEPLOYMENT_ID, "next_hop_rtt_ms": MS, "ingress_rtt_ms": MS}, 0),
    "load_failed": ({"deployment_id": DEPLOYMENT_ID, "error": TEXT}, 0),
    "result": ({"request_id": REQUEST_ID, "dtype": DTYPE, "shape": SHAPE,
                "session_id": Field("str", required=False, low=1, high=128),
                "position": Field("int", required=False, low=0, high=2**31),
                "trace": Field("trace", required=False)}, MAX_TENSOR_BYTES),
    "failed": ({"request_id": REQUEST_ID, "error": TEXT}, 0),
    "pong": ({"request_id": Field("int", required=False, low=0, high=2**53)}, 0),
    # coordinator -> runner
    "challenge": ({"nonce": NONCE, "signature": SIGNATURE}, 0),
    "welcome": ({"peer_id": PEER_ID, "heartbeat_s": Field("float", low=0.05, high=60.0)}, 0),
    "refused": ({"reason": TEXT}, 0),
    # `routes`: the later stages in tour order, `reply_to`: the ingress; the only places it sends to;
    # `token`: the pipeline's access token (engine.runner.server): stages present it to the next stage
    # and accept only channels that present it (the previous stage, the ingress)
    "deploy": ({**_STAGE, "routes": Field("hops", required=False), "reply_to": Field("hop", required=False),
                "token": TOKEN}, 0),
    "routes": ({"deployment_id": DEPLOYMENT_ID, "routes": Field("hops"), "reply_to": HOP, "token": TOKEN}, 0),
    # `position`: the session position of the tensor's first token (0 = prefill); `route`/`reply_to`:
    # the tour's later stages and the ingress (engine.protocol.stage)
    # `sampling`: how the last stage picks the token (engine.decoding.Sampling.wire; absent = greedy)
    "forward": ({"request_id": REQUEST_ID, "session_id": SESSION_ID, "position": Field("int", low=0, high=2**31),
                 "dtype": DTYPE, "shape": SHAPE, "route": Field("addresses", required=False),
                 "reply_to": Field("str", nullable=True, required=False, low=1, high=MAX_ADDRESS_CHARS),
                 "want": Field("str", required=False, low=1, high=16),
                 "sampling": Field("sampling", required=False, nullable=True)}, MAX_TENSOR_BYTES),
    "end_session": ({"session_id": SESSION_ID}, 0),
    "release": ({"deployment_id": DEPLOYMENT_ID}, 0),    # drop the stage of that deployment (re-placement)
    # the coordinator's own heartbeat (runners notice it is gone), or a runner timing its ingress leg
    "ping": ({"request_id": Field("int", required=False, low=0, high=2**53)}, 0),
    "error": ({"reason": TEXT, "field": Field("str", nullable=True, required=False, low=0, high=256),
               "error": Field("str", required=False, low=0, high=128),
               "request_id": Field("int", required=False, low=0, high=2**53),
               "session_id": Field("str", required=False, low=0, high=128),
               "for_type": Field("str", required=False, low=0, high=64),
               "unreachable": Field("str", required=False, low=1, high=MAX_ADDRESS_CHARS)}, 0),
}
RUNNER_TO_COORDINATOR = frozenset({"join_hello", "join", "heartbeat", "load_progress", "ready", "measured_rtt",
                                   "load_failed", "result", "failed", "error", "ping", "pong"})
COORDINATOR_TO_RUNNER = frozenset({"challenge", "welcome", "refused", "deploy", "routes", "forward", "end_session",
                                   "release", "ping", "pong", "error"})


def validate(header: Any, payload: bytes, allowed: frozenset[str]) -> dict[str, Any]:
    """Check one received message against its type's schema; returns a clean copy of the header."""
    if not isinstance(header, dict):
        raise InvalidInput("header", type(header).__name__, "expected a JSON object")
    kind = header.get("type")
    if not isinstance(kind, str) or kind not in allowed:
        shown = kind if isinstance(kind, str) and len(kind) <= 64 else type(kind).__name__
        raise InvalidInput("type", shown, f"unknown message type; expected one of {sorted(allowed)}")
    fields, payload_limit = SCHEMAS[kind]
    if len(payload) > payload_limit:
        raise InvalidInput(f"{kind}.payload", len(payload), f"expected at most {payload_limit} bytes")
    # `payload_bytes` is the transport's own field, already checked against the frame
    extra = sorted(set(header) - set(fields) - {"type", "payload_bytes"})
    if extra:
        raise InvalidInput(f"{kind}.{extra[0]}", "...", "unexpected field")
    clean: dict[str, Any] = {"type": kind}
    for name, spec in fields.items():
        where = f"{kind}.{name}"
        if name not in header:
            if spec.required:
                raise InvalidInput(where, None, "missing")
            continue
        clean[name] = _check_value(header[name], spec, where)
    if "shape" in fields:
        check_tensor_fields(clean, len(payload))
    return clean


def _check_value(value: Any, spec: Field, where: str) -> Any:
    if value is None:
        if spec.nullable:
            return None
        raise InvalidInput(where, None, "must not be null")
    if spec.kind == "str":
        if not isinstance(value, str):
            raise InvalidInput(where, _short(value), "expected a string")
        if not (spec.low or 0) <= len(value) <= (spec.high or MAX_TEXT_CHARS):
            raise InvalidInput(where, _short(value), f"expected {spec.low:g}..{spec.high:g} characters")
    elif spec.kind in ("float", "int"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput(where, _short(value), "expected a number")
        value = finite_number(value, where, minimum=spec.low, maximum=spec.high, integer=spec.kind == "int")
    elif spec.kind == "bool":
        if not isinstance(value, bool):
            raise InvalidInput(where, _short(value), "expected true or false")
    elif spec.kind == "shape":
        if (not isinstance(value, list) or not 1 <= len(value) <= MAX_TENSOR_DIMS
                or any(isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 2**31 for d in value)):
            raise InvalidInput(where, _short(value), f"expected a list of 1..{MAX_TENSOR_DIMS} sizes >= 0")
        value = list(value)
    elif spec.kind == "sampling":
        from engine.decoding import Sampling

        Sampling.from_wire(value)           # raises InvalidInput naming sampling.<field>
        value = dict(value)
    elif spec.kind == "stage":
        if not isinstance(value, dict):
            raise InvalidInput(where, _short(value), "expected an object")
        extra = sorted(set(value) - set(_STAGE))
        if extra:
            raise InvalidInput(f"{where}.{extra[0]}", "...", "unexpected field")
        value = {name: _check_value(value.get(name), field, f"{where}.{name}") for name, field in _STAGE.items()}
    elif spec.kind == "hop":
        if not isinstance(value, dict) or set(value) != {"address", "lat", "lon"}:
            raise InvalidInput(where, _short(value), "expected {address, lat, lon}")
        value = {"address": _check_value(value["address"], ADDRESS, f"{where}.address"),
                 "lat": _check_value(value["lat"], LAT, f"{where}.lat"),
                 "lon": _check_value(value["lon"], LON, f"{where}.lon")}
    elif spec.kind in ("hops", "addresses"):
        if not isinstance(value, list) or len(value) > MAX_HOPS:
            raise InvalidInput(where, _short(value), f"expected a list of at most {MAX_HOPS}")
        item = HOP if spec.kind == "hops" else ADDRESS
        value = [_check_value(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    elif spec.kind == "trace":
        from engine.protocol.stage import parse_trace

        value = [list(pair) for pair in parse_trace(value)]
    elif spec.kind == "object":
        if not isinstance(value, dict) or len(value) > 32:
            raise InvalidInput(where, _short(value), "expected an object of at most 32 keys")
    if spec.check is not None:
        reason = spec.check(value)
        if reason:
            raise InvalidInput(where, _short(value), reason)
    return value


def _short(value: Any) -> Any:
    """Keep error messages small when a peer sends something huge."""
    text = repr(value)
    return value if len(text) <= 80 else text[:77] + "..."
