"""Frames round-trip every tensor kind exactly, and every malformed frame is refused by name."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InvalidInput
from engine.transport.frames import (
    DTYPES,
    PREFIX,
    FrameError,
    FrameLimits,
    decode_frame,
    encode_frame,
    frame_to_tensor,
    tensor_to_frame,
)


def raw_frame(header: bytes | dict, payload: bytes = b"") -> bytes:
    """A frame built by hand, so it can be wrong in ways encode_frame refuses to be."""
    header_json = header if isinstance(header, bytes) else json.dumps(header).encode()
    return PREFIX.pack(len(header_json), len(payload)) + header_json + payload


def sample(dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    if dtype == torch.bool:
        return torch.rand(shape) > 0.5
    if dtype.is_floating_point:
        return torch.randn(shape).to(dtype)
    return torch.randint(-100 if dtype != torch.uint8 else 0, 100, shape, dtype=dtype)


@pytest.mark.parametrize("name", sorted(DTYPES))
@pytest.mark.parametrize("shape", [(2, 3, 5), (0,), (4, 0, 2), ()])
def test_tensor_round_trips_bit_exactly_through_bytes(name: str, shape: tuple[int, ...]) -> None:
    tensor = sample(DTYPES[name], shape)
    header, payload = tensor_to_frame("activations", tensor, session="s1", positions=[0, 1])
    frame = encode_frame(header, payload)

    got_header, got_payload = decode_frame(frame)
    result = frame_to_tensor(got_header, got_payload)

    assert got_header["type"] == "activations"
    assert got_header["dtype"] == name and got_header["shape"] == list(shape)
    assert got_header["session"] == "s1" and got_header["positions"] == [0, 1]
    assert result.dtype == tensor.dtype and result.shape == tensor.shape
    assert torch.equal(
        result.view(torch.uint8) if shape else result, tensor.view(torch.uint8) if shape else tensor
    )


def test_bfloat16_bits_survive_including_nan_and_inf() -> None:
    tensor = torch.tensor([1.0, -0.0, float("inf"), float("nan"), 3.140625], dtype=torch.bfloat16)
    result = frame_to_tensor(*decode_frame(encode_frame(*tensor_to_frame("t", tensor))))
    assert torch.equal(result.view(torch.int16), tensor.view(torch.int16))


def test_non_contiguous_tensor_is_sent_in_logical_order() -> None:
    tensor = torch.arange(12, dtype=torch.float32).reshape(3, 4).t()
    result = frame_to_tensor(*tensor_to_frame("t", tensor))
    assert torch.equal(result, tensor)


def test_received_tensor_is_writable_and_owns_its_memory() -> None:
    header, payload = tensor_to_frame("t", torch.zeros(4))
    result = frame_to_tensor(header, payload)
    result += 1
    assert torch.equal(frame_to_tensor(header, payload), torch.zeros(4))


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(sorted(DTYPES)),
    shape=st.lists(st.integers(min_value=0, max_value=5), max_size=4),
)
def test_any_shape_and_dtype_round_trips(name: str, shape: list[int]) -> None:
    tensor = sample(DTYPES[name], tuple(shape))
    result = frame_to_tensor(*decode_frame(encode_frame(*tensor_to_frame("t", tensor))))
    assert result.shape == tensor.shape and result.dtype == tensor.dtype
    assert result.flatten().view(torch.uint8).tolist() == tensor.flatten().view(torch.uint8).tolist()


def test_plain_frame_round_trips_and_gets_payload_bytes() -> None:
    header, payload = decode_frame(encode_frame({"type": "hello", "peer": "a"}, b"xyz"))
    assert header == {"type": "hello", "peer": "a", "payload_bytes": 3}
    assert payload == b"xyz"


def test_frame_error_is_invalid_input_naming_field_and_value() -> None:
    with pytest.raises(InvalidInput) as caught:
        decode_frame(
            raw_frame({"type": "t", "payload_bytes": 4, "dtype": "complex64", "shape": [1]}, b"abcd")
        )
    assert isinstance(caught.value, FrameError)
    assert caught.value.field == "dtype" and caught.value.value == "complex64"
    assert "dtype='complex64'" in str(caught.value)


BAD_FRAMES = {
    # name: (frame bytes, field the error must name, recoverable)
    "bad json": (raw_frame(b'{"type": "t", "payload_bytes": 0'), "header", True),
    "not utf-8": (raw_frame(b'{"type": "\xff"}'), "header", True),
    "not an object": (raw_frame(b"[1, 2]"), "header", True),
    "NaN in header": (raw_frame(b'{"type": "t", "payload_bytes": 0, "x": NaN}'), "header", True),
    "deeply nested": (raw_frame(b"[" * 60000), "header", True),
    "huge integer": (raw_frame(b'{"type": "t", "payload_bytes": ' + b"9" * 5000 + b"}"), "header", True),
    "missing type": (raw_frame({"payload_bytes": 0}), "type", True),
    "type not a string": (raw_frame({"type": 7, "payload_bytes": 0}), "type", True),
    "payload_bytes disagrees": (raw_frame({"type": "t", "payload_bytes": 5}, b"abcd"), "payload_bytes", True),
    "payload_bytes a float": (raw_frame({"type": "t", "payload_bytes": 4.0}, b"abcd"), "payload_bytes", True),
    "payload_bytes a bool": (raw_frame({"type": "t", "payload_bytes": True}, b"a"), "payload_bytes", True),
    "payload_bytes missing": (raw_frame({"type": "t"}, b"abcd"), "payload_bytes", True),
    "unknown dtype": (
        raw_frame({"type": "t", "payload_bytes": 4, "dtype": "float8", "shape": [1]}, b"abcd"),
        "dtype",
        True,
    ),
    "shape vs payload": (
        raw_frame({"type": "t", "payload_bytes": 8, "dtype": "float32", "shape": [3]}, bytes(8)),
        "shape",
        True,
    ),
    "negative dim": (
        raw_frame({"type": "t", "payload_bytes": 0, "dtype": "float32", "shape": [-1, 0]}),
        "shape[0]",
        True,
    ),
    "non-int dim": (
        raw_frame({"type": "t", "payload_bytes": 4, "dtype": "float32", "shape": [1.0]}, bytes(4)),
        "shape[0]",
        True,
    ),
    "shape not a list": (
        raw_frame({"type": "t", "payload_bytes": 4, "dtype": "float32", "shape": 1}, bytes(4)),
        "shape",
        True,
    ),
    "oversized header": (PREFIX.pack(65 * 1024, 0) + b"{}", "header_bytes", False),
    "oversized payload": (PREFIX.pack(2, 2**40) + b"{}", "payload_bytes", False),
    "truncated prefix": (PREFIX.pack(2, 0)[:7], "prefix", False),
    "truncated payload": (raw_frame({"type": "t", "payload_bytes": 4}, b"abcd")[:-1], "payload", False),
    "trailing bytes": (raw_frame({"type": "t", "payload_bytes": 0}) + b"x", "frame", True),
}


@pytest.mark.parametrize("name", sorted(BAD_FRAMES))
def test_bad_frame_is_refused_naming_the_field(name: str) -> None:
    frame, field, recoverable = BAD_FRAMES[name]
    with pytest.raises(FrameError) as caught:
        decode_frame(frame)
    assert caught.value.field == field, str(caught.value)
    assert caught.value.recoverable is recoverable


def test_unknown_type_is_refused_when_types_are_restricted() -> None:
    frame = encode_frame({"type": "launch_missiles"})
    with pytest.raises(FrameError) as caught:
        decode_frame(frame, allowed_types={"activations", "tokens"})
    assert caught.value.field == "type" and caught.value.value == "launch_missiles"
    assert decode_frame(encode_frame({"type": "tokens"}), allowed_types={"tokens"})[0]["type"] == "tokens"


def test_limits_apply_to_writers_too() -> None:
    limits = FrameLimits(max_header_bytes=64, max_payload_bytes=10)
    with pytest.raises(FrameError) as caught:
        encode_frame({"type": "t"}, bytes(11), limits)
    assert caught.value.field == "payload_bytes"
    with pytest.raises(FrameError) as caught:
        encode_frame({"type": "t", "note": "x" * 100}, b"", limits)
    assert caught.value.field == "header_bytes"
    with pytest.raises(FrameError) as caught:
        decode_frame(encode_frame({"type": "t"}, bytes(11)), limits)
    assert caught.value.field == "payload_bytes" and not caught.value.recoverable


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("not a dict", "header"),
        ({"kind": "t"}, "type"),
        ({"type": "t", "when": object()}, "header"),
        ({"type": "t", "payload_bytes": 99}, "payload_bytes"),
        ({"type": "t", "dtype": "float32", "shape": [2]}, "shape"),
    ],
)
def test_writer_refuses_headers_it_cannot_frame(header: object, field: str) -> None:
    with pytest.raises(FrameError) as caught:
        encode_frame(header, bytes(4))  # type: ignore[arg-type]
    assert caught.value.field == field


def test_tensor_fields_cannot_be_overridden_by_extra_fields() -> None:
    with pytest.raises(FrameError) as caught:
        tensor_to_frame("t", torch.zeros(2), shape=[5])
    assert caught.value.field == "shape"


def test_unsendable_dtype_is_refused() -> None:
    with pytest.raises(FrameError) as caught:
        tensor_to_frame("t", torch.zeros(2, dtype=torch.complex64))
    assert caught.value.field == "dtype"


def test_frame_to_tensor_checks_payload_length() -> None:
    header, payload = tensor_to_frame("t", torch.zeros(2, 3, dtype=torch.float16))
    with pytest.raises(FrameError) as caught:
        frame_to_tensor(header, payload[:-2])
    assert caught.value.field == "shape"


def test_long_values_are_cut_in_error_messages() -> None:
    with pytest.raises(FrameError) as caught:
        decode_frame(raw_frame(b"{" + b"x" * 5000))
    assert len(str(caught.value)) < 400
