"""Every message that crosses the wire is checked against its type's schema before it is used."""

from __future__ import annotations

import math

import pytest
import torch

from engine.errors import InvalidInput
from engine.protocol.messages import (
    COORDINATOR_TO_RUNNER,
    MAX_TENSOR_BYTES,
    RUNNER_TO_COORDINATOR,
    validate,
)
from engine.transport.frames import tensor_to_frame


def join(**overrides):
    msg = {"type": "join", "protocol": 2, "key": "ab" * 32, "proof": "cd" * 32, "signature": "ef" * 64,
           "peer_id": "paris-1", "name": "Paris",
           "lat": 48.85, "lon": 2.35, "carbon_g_per_kwh": None, "tflops": None, "gpu": "RTX 4090",
           "total_vram_gb": 24.0, "free_vram_gb": 22.5, "utilization_pct": 3.0, "power_w": 40.0}
    msg.update(overrides)
    return msg


def test_a_valid_join_is_accepted_and_numbers_normalised():
    clean = validate(join(lat=48, payload_bytes=0), b"", RUNNER_TO_COORDINATOR)
    assert clean["lat"] == 48.0 and isinstance(clean["lat"], float)
    assert "payload_bytes" not in clean


@pytest.mark.parametrize("field, value", [
    ("lat", 90.5), ("lon", -181.0), ("lat", math.nan), ("free_vram_gb", math.inf), ("free_vram_gb", -1.0),
    ("peer_id", ""), ("peer_id", "has space"), ("peer_id", "x" * 65), ("lat", "48"), ("lat", True),
    ("utilization_pct", 101.0), ("proof", 7), ("protocol", 1.5), ("key", "AB" * 32), ("signature", "ef"),
    ("name", "Paris\x1b[2J"), ("name", "a\nb"), ("gpu", "RTX\ud800"),
])
def test_a_join_with_a_bad_field_is_refused_naming_the_field(field, value):
    with pytest.raises(InvalidInput) as info:
        validate(join(**{field: value}), b"", RUNNER_TO_COORDINATOR)
    assert info.value.field == f"join.{field}"


def test_missing_and_unexpected_fields_are_refused():
    msg = join()
    del msg["lat"]
    with pytest.raises(InvalidInput, match="join.lat"):
        validate(msg, b"", RUNNER_TO_COORDINATOR)
    with pytest.raises(InvalidInput, match="join.extra"):
        validate(join(extra=1), b"", RUNNER_TO_COORDINATOR)


def test_unknown_types_and_types_of_the_other_direction_are_refused():
    with pytest.raises(InvalidInput, match="type"):
        validate({"type": "rm -rf"}, b"", RUNNER_TO_COORDINATOR)
    with pytest.raises(InvalidInput, match="type"):
        validate({"type": "deploy"}, b"", RUNNER_TO_COORDINATOR)     # only the coordinator deploys
    with pytest.raises(InvalidInput, match="header"):
        validate(["join"], b"", RUNNER_TO_COORDINATOR)


def test_a_payload_where_none_belongs_is_refused():
    with pytest.raises(InvalidInput, match="payload"):
        validate({"type": "heartbeat", "gpu": None, "total_vram_gb": 1.0, "free_vram_gb": 1.0,
                  "utilization_pct": None, "power_w": None}, b"x", RUNNER_TO_COORDINATOR)


def test_a_tensor_result_must_match_its_dtype_and_shape():
    header, payload = tensor_to_frame("result", torch.zeros(1, 3, 8), request_id=4)
    assert validate(header, payload, RUNNER_TO_COORDINATOR)["shape"] == [1, 3, 8]
    with pytest.raises(InvalidInput, match="shape"):
        validate({**header, "shape": [1, 3, 9]}, payload, RUNNER_TO_COORDINATOR)
    with pytest.raises(InvalidInput, match="dtype"):
        validate({**header, "dtype": "object"}, payload, RUNNER_TO_COORDINATOR)
    with pytest.raises(InvalidInput, match="payload"):
        validate(header, b"\0" * (MAX_TENSOR_BYTES + 1), RUNNER_TO_COORDINATOR)


def test_a_deploy_and_a_forward_are_what_a_runner_accepts():
    deploy = {"type": "deploy", "deployment_id": "d1", "model": "smollm2", "layer_start": 0, "layer_end": 15,
              "embeddings": True, "lm_head": False}
    assert validate(deploy, b"", COORDINATOR_TO_RUNNER) == deploy
    header, payload = tensor_to_frame("forward", torch.tensor([[1, 2, 3]]), request_id=1, session_id="s1",
                                      position=0)
    assert validate(header, payload, COORDINATOR_TO_RUNNER)["position"] == 0
    with pytest.raises(InvalidInput, match="deploy.embeddings"):
        validate({**deploy, "embeddings": "yes"}, b"", COORDINATOR_TO_RUNNER)


def test_a_deploy_carries_the_plans_quantisation_and_refuses_one_runners_cannot_hold():
    deploy = {"type": "deploy", "deployment_id": "d1", "model": "smollm2", "layer_start": 0, "layer_end": 10,
              "embeddings": True, "lm_head": False, "quant": "int4"}
    assert validate(deploy, b"", COORDINATOR_TO_RUNNER)["quant"] == "int4"
    assert "quant" not in validate({k: v for k, v in deploy.items() if k != "quant"}, b"", COORDINATOR_TO_RUNNER)
    with pytest.raises(InvalidInput) as info:
        validate({**deploy, "quant": "int3"}, b"", COORDINATOR_TO_RUNNER)
    assert (info.value.field, info.value.value) == ("deploy.quant", "int3")
