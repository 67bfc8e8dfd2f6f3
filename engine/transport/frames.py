"""Frames: the only thing Prismn peers send each other.

Wire form of one frame (all integers big-endian)::

    u32 header_bytes | u64 payload_bytes | header (UTF-8 JSON object) | payload (raw bytes)

Both lengths sit in the fixed 12-byte prefix, outside the JSON, so a reader always knows where the
next frame starts: a frame whose header is bad (malformed JSON, unknown type, a shape that does not
match its payload) is skipped whole and the stream stays usable. The JSON header repeats the payload
length as ``payload_bytes`` and must agree with the prefix. Only a length over the limits (or a
stream that ends inside a frame) leaves the reader unable to go on: those errors carry
``recoverable=False`` and channels drop the connection.

Tensors travel as raw bytes of a contiguous tensor with ``dtype`` (a name from `DTYPES`) and
``shape`` in the header. Nothing that arrives is ever unpickled or evaluated.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import torch

from engine.errors import InvalidInput

PREFIX = struct.Struct(">IQ")
PREFIX_BYTES = PREFIX.size  # 12

KIB = 2**10
MIB = 2**20

# Names on the wire -> torch dtypes. Names are torch's own without the "torch." prefix.
DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
_DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}

# A value shown inside an error message is cut to this many characters.
_SHOWN_CHARS = 80


class FrameError(InvalidInput):
    """A frame (or a header field) is not acceptable.

    `recoverable` is True when the reader consumed exactly this frame and can read the next one;
    False when the stream position is lost (a length over the limits, a stream cut inside a frame).
    """

    def __init__(self, field: str, value: object, reason: str, recoverable: bool = True) -> None:
        if isinstance(value, (bytes, bytearray, str)) and len(value) > _SHOWN_CHARS:
            value = value[:_SHOWN_CHARS]
            reason = f"{reason} (value cut to {_SHOWN_CHARS} chars)"
        super().__init__(field, value, reason)
        self.recoverable = recoverable


@dataclass(frozen=True)
class FrameLimits:
    """Size limits a reader enforces before allocating anything; a writer checks them too.

    `max_read_payload_bytes` lowers the limit for frames read only (a runner receives hidden states
    but may send larger logits). `stall_s`: a frame once begun must arrive whole within `stall_s`
    plus its size at `min_bytes_per_s`, else the connection is dropped (None: no deadline).
    """

    max_header_bytes: int = 64 * KIB
    max_payload_bytes: int = 256 * MIB
    max_read_payload_bytes: int | None = None
    stall_s: float | None = None
    min_bytes_per_s: float = 1 * MIB

    def read_deadline_s(self, num_bytes: int) -> float | None:
        return None if self.stall_s is None else self.stall_s + num_bytes / self.min_bytes_per_s

    def __post_init__(self) -> None:
        if not 2 <= self.max_header_bytes < 2**32:
            raise InvalidInput("max_header_bytes", self.max_header_bytes, "must be in [2, 2**32)")
        if not 0 <= self.max_payload_bytes < 2**64:
            raise InvalidInput("max_payload_bytes", self.max_payload_bytes, "must be in [0, 2**64)")


DEFAULT_LIMITS = FrameLimits()
MAX_TENSOR_DIMS = 8
MAX_DIM = 2**31


def dtype_name(dtype: torch.dtype) -> str:
    """The wire name of a torch dtype; FrameError for dtypes frames do not carry."""
    try:
        return _DTYPE_NAMES[dtype]
    except KeyError:
        raise FrameError("dtype", str(dtype), f"not sendable; known: {sorted(DTYPES)}") from None


def encode_frame(header: dict[str, Any], payload: bytes = b"", limits: FrameLimits = DEFAULT_LIMITS) -> bytes:
    """One whole frame as bytes. Sets ``payload_bytes`` in the header when it is missing."""
    return encode_prefix_and_header(header, memoryview(payload).nbytes, limits) + bytes(payload)


def encode_prefix_and_header(
    header: dict[str, Any], payload_bytes: int, limits: FrameLimits = DEFAULT_LIMITS
) -> bytes:
    """Prefix + JSON header of a frame whose payload (of `payload_bytes`) the caller writes next.

    Channels use this so a large payload is written as it is, without being copied into the frame.
    """
    if not isinstance(header, dict):
        raise FrameError("header", type(header).__name__, "must be a dict")
    header = dict(header)
    declared = header.setdefault("payload_bytes", payload_bytes)
    if type(declared) is not int or declared != payload_bytes:
        raise FrameError("payload_bytes", declared, f"header says {declared!r}, payload has {payload_bytes}")
    _check_type_field(header.get("type"), None)
    if payload_bytes > limits.max_payload_bytes:
        raise FrameError("payload_bytes", payload_bytes, f"over the limit of {limits.max_payload_bytes}")
    if "dtype" in header or "shape" in header:
        check_tensor_fields(header, payload_bytes)
    try:
        header_json = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise FrameError("header", repr(header), f"not JSON-serialisable: {exc}") from None
    if len(header_json) > limits.max_header_bytes:
        raise FrameError("header_bytes", len(header_json), f"over the limit of {limits.max_header_bytes}")
    return PREFIX.pack(len(header_json), payload_bytes) + header_json


def parse_prefix(prefix: bytes, limits: FrameLimits = DEFAULT_LIMITS) -> tuple[int, int]:
    """(header_bytes, payload_bytes) from the 12-byte prefix; lengths over the limits are fatal."""
    if len(prefix) != PREFIX_BYTES:
        raise FrameError("prefix", len(prefix), f"truncated: need {PREFIX_BYTES} bytes", recoverable=False)
    header_bytes, payload_bytes = PREFIX.unpack(prefix)
    if not 2 <= header_bytes <= limits.max_header_bytes:
        raise FrameError(
            "header_bytes", header_bytes, f"must be in [2, {limits.max_header_bytes}]", recoverable=False
        )
    read_limit = min(limits.max_payload_bytes, limits.max_read_payload_bytes or limits.max_payload_bytes)
    if payload_bytes > read_limit:
        raise FrameError("payload_bytes", payload_bytes, f"over the limit of {read_limit}", recoverable=False)
    return header_bytes, payload_bytes


def decode_header(
    header_json: bytes, payload_bytes: int, allowed_types: Collection[str] | None = None
) -> dict[str, Any]:
    """The header dict of a frame whose prefix declared `payload_bytes`; FrameError if unacceptable.

    Checks: UTF-8 JSON object, ``type`` a non-empty string (in `allowed_types` when given),
    ``payload_bytes`` equal to the prefix, and tensor fields (``dtype``/``shape``) consistent.
    """
    try:
        header = json.loads(bytes(header_json).decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise FrameError("header", bytes(header_json), f"not UTF-8: {exc.reason}") from None
    except ValueError as exc:  # json.JSONDecodeError, _reject_constant, over-long integers
        raise FrameError("header", bytes(header_json), f"not valid JSON: {exc}") from None
    except RecursionError:
        raise FrameError("header", bytes(header_json), "JSON nested too deeply") from None
    if not isinstance(header, dict):
        raise FrameError("header", type(header).__name__, "must be a JSON object")
    _check_type_field(header.get("type"), allowed_types)
    declared = header.get("payload_bytes")
    if type(declared) is not int or declared != payload_bytes:
        raise FrameError("payload_bytes", declared, f"prefix declared {payload_bytes}")
    if "dtype" in header or "shape" in header:
        check_tensor_fields(header, payload_bytes)
    return header


def decode_frame(
    frame: bytes,
    limits: FrameLimits = DEFAULT_LIMITS,
    allowed_types: Collection[str] | None = None,
) -> tuple[dict[str, Any], bytes]:
    """(header, payload) of one whole frame held in memory (a file, a test, a datagram)."""
    header_bytes, payload_bytes = parse_prefix(bytes(frame[:PREFIX_BYTES]), limits)
    expected = PREFIX_BYTES + header_bytes + payload_bytes
    if len(frame) < expected:
        raise FrameError("payload", len(frame), f"truncated: frame needs {expected} bytes", recoverable=False)
    if len(frame) > expected:
        raise FrameError("frame", len(frame), f"{len(frame) - expected} bytes after the frame's end")
    header = decode_header(frame[PREFIX_BYTES : PREFIX_BYTES + header_bytes], payload_bytes, allowed_types)
    return header, bytes(frame[PREFIX_BYTES + header_bytes :])


def tensor_to_frame(frame_type: str, tensor: torch.Tensor, **fields: Any) -> tuple[dict[str, Any], bytes]:
    """(header, payload) carrying `tensor`'s raw bytes; `fields` are extra JSON header fields."""
    for reserved in ("type", "dtype", "shape", "payload_bytes"):
        if reserved in fields:
            raise FrameError(reserved, fields[reserved], "set by tensor_to_frame, not by the caller")
    name = dtype_name(tensor.dtype)
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    # Raw bytes through a uint8 view: works for every dtype, bfloat16 included (numpy has none).
    payload = flat.view(torch.uint8).numpy().tobytes()
    header = {"type": frame_type, "dtype": name, "shape": list(tensor.shape), **fields}
    header["payload_bytes"] = len(payload)
    return header, payload


def frame_to_tensor(header: dict[str, Any], payload: bytes) -> torch.Tensor:
    """The tensor a frame carries (a fresh, writable CPU tensor); FrameError if inconsistent."""
    dtype, shape = check_tensor_fields(header, len(payload))
    numel = 1
    for dim in shape:
        numel *= dim
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    # bytearray: torch.frombuffer needs a writable buffer; this is the one copy out of the frame.
    buffer = payload if isinstance(payload, bytearray) else bytearray(payload)
    return torch.frombuffer(buffer, dtype=torch.uint8).view(dtype).reshape(shape)


def check_tensor_fields(header: dict[str, Any], payload_bytes: int) -> tuple[torch.dtype, list[int]]:
    """(dtype, shape) of a tensor header after checking them against the payload length."""
    name = header.get("dtype")
    if name not in DTYPES:
        raise FrameError("dtype", name, f"unknown dtype; known: {sorted(DTYPES)}")
    dtype = DTYPES[name]
    shape = header.get("shape")
    if not isinstance(shape, list) or len(shape) > MAX_TENSOR_DIMS:
        raise FrameError("shape", shape, f"must be a list of at most {MAX_TENSOR_DIMS} ints")
    numel = 1
    for index, dim in enumerate(shape):
        if not isinstance(dim, int) or isinstance(dim, bool):
            raise FrameError(f"shape[{index}]", dim, "must be an int")
        if not 0 <= dim <= MAX_DIM:     # torch takes 64-bit sizes: 2**70 would fail inside its C++
            raise FrameError(f"shape[{index}]", dim, f"must be in 0..{MAX_DIM}")
        numel *= dim
    itemsize = torch.empty((), dtype=dtype).element_size()
    if numel * itemsize != payload_bytes:
        raise FrameError(
            "shape",
            shape,
            f"{numel} x {itemsize} B ({name}) = {numel * itemsize} B but payload has {payload_bytes} B",
        )
    return dtype, list(shape)


def _check_type_field(frame_type: object, allowed_types: Collection[str] | None) -> None:
    if not isinstance(frame_type, str) or not frame_type:
        raise FrameError("type", frame_type, "must be a non-empty string")
    if allowed_types is not None and frame_type not in allowed_types:
        raise FrameError("type", frame_type, f"unknown frame type; allowed: {sorted(allowed_types)}")


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed in a frame header")
