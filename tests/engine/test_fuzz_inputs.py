"""Every parser of outside data, fuzzed: peers files, model configs, plan JSON, CLI runs, frames,
coordinator messages, runner requests. Whatever comes in, the outcome is a value or ONE clear error
naming the field (InvalidInput), never another exception; CLI output is strict JSON and one stderr
line; what reaches a terminal has no control characters."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.cli import main as cli_main
from engine.errors import InvalidInput
from engine.model import footprint
from engine.model.spec import spec_from_config
from engine.paths import ASSETS_DIR
from engine.plan import Plan
from engine.planning.planner import make_plan
from engine.planning.types import Policy, Weights
from engine.protocol.messages import COORDINATOR_TO_RUNNER, RUNNER_TO_COORDINATOR, validate
from engine.protocol.stage import parse_end_session, parse_forward
from engine.swarm import DEMO_SWARM_PATH, load_swarm
from engine.transport.frames import FrameLimits, check_tensor_fields, decode_header, parse_prefix

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Numbers at every edge JSON can carry: tiny, huge, negative, non-finite, bools, long integers.
EDGE_NUMBERS = st.one_of(
    st.sampled_from([0, -1, 1, 1e-320, 1e-300, 1.7e308, 1e6, 2**53, 2**63, 10**400, math.inf, -math.inf,
                     math.nan, True, False]),
    st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-(10**30), max_value=10**30))
TEXT = st.text(max_size=24)
SCALARS = st.one_of(st.none(), st.booleans(), EDGE_NUMBERS, TEXT)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(TEXT, inner, max_size=4)), max_leaves=12)


def value_or_field(keys: list[str]) -> st.SearchStrategy:
    """A dict over `keys`, each an edge value, or missing; sometimes with a stranger key."""
    return st.fixed_dictionaries({}, optional={key: st.one_of(SCALARS, JSON_VALUES) for key in keys})


PEER_KEYS = ["id", "lat", "lon", "free_vram_gb", "carbon_g_per_kwh", "region", "gpu", "tflops", "power_w", "rtt_ms"]
PLAUSIBLE_PEER = st.fixed_dictionaries(
    {"id": st.one_of(st.text(min_size=1, max_size=12), st.sampled_from(["a\n", "\x1b[31m", "\ud800", "p1"])),
     "lat": st.one_of(st.floats(-90, 90), EDGE_NUMBERS), "lon": st.one_of(st.floats(-180, 180), EDGE_NUMBERS),
     "free_vram_gb": st.one_of(st.floats(0, 200), EDGE_NUMBERS)},
    optional={"carbon_g_per_kwh": EDGE_NUMBERS, "tflops": EDGE_NUMBERS, "power_w": EDGE_NUMBERS,
              "rtt_ms": EDGE_NUMBERS})


def write(tmp_path, name: str, data) -> str:
    path = tmp_path / name
    # ensure_ascii keeps lone surrogates writable (as \ud800 escapes); NaN/Infinity as Python writes them.
    path.write_text(json.dumps(data))
    return str(path)


@FUZZ
@given(data=st.one_of(JSON_VALUES, st.fixed_dictionaries(
    {"ingress": value_or_field(["name", "lat", "lon"]), "peers": st.lists(value_or_field(PEER_KEYS), max_size=3)})))
def test_any_peers_file_loads_or_names_the_bad_field(tmp_path, data):
    try:
        load_swarm(write(tmp_path, "peers.json", data))
    except InvalidInput as error:
        assert error.field


def strict_json(text: str):
    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


@FUZZ
@given(peers=st.lists(PLAUSIBLE_PEER, min_size=1, max_size=4))
def test_the_cli_prints_strict_json_or_one_error_line_for_any_peers(tmp_path, capsys, peers):
    path = write(tmp_path, "peers.json", {"ingress": {"name": "x", "lat": 50.0, "lon": 8.0}, "peers": peers})
    code = cli_main(["plan", "--model", "smollm2", "--peers", path, "--json"])
    out, err = capsys.readouterr()
    assert code in (0, 2, 3)
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("error: ")
        assert not any(ord(c) < 32 for c in err.rstrip("\n")) and "\ud800" not in err
    else:
        plan = strict_json(out)
        assert plan["schema"] == "prismn.plan/1"


@FUZZ
@given(overrides=value_or_field(["model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                 "num_key_value_heads", "intermediate_size", "vocab_size", "head_dim",
                                 "tie_word_embeddings", "max_position_embeddings", "num_local_experts",
                                 "num_experts_per_tok"]))
def test_any_model_config_gives_a_plan_with_finite_figures_or_names_the_field(overrides):
    try:
        spec = spec_from_config({**SMOLLM2_CONFIG, **overrides}, name="fuzzed")
        plan = make_plan(footprint(spec), DEMO.peers, DEMO.ingress, Policy.CARBON, Weights())
    except InvalidInput as error:
        assert error.field
        return
    strict_json(json.dumps(plan.to_dict()))


SMOLLM2_CONFIG = json.loads((ASSETS_DIR / "models" / "smollm2-135m.json").read_text())
DEMO = load_swarm(DEMO_SWARM_PATH)


@FUZZ
@given(data=st.one_of(JSON_VALUES, st.fixed_dictionaries({"schema": st.just("prismn.plan/1")},
                                                         optional={k: JSON_VALUES for k in
                                                                   ("model", "policy", "stages", "metrics",
                                                                    "feasible", "ingress", "weights")})))
def test_any_plan_json_parses_or_names_the_field(data):
    try:
        Plan.from_dict(data)
    except InvalidInput as error:
        assert error.field


@FUZZ
@given(prefix=st.binary(min_size=12, max_size=12), header=st.binary(max_size=200), payload_bytes=st.integers(0, 64))
def test_any_frame_bytes_are_a_frame_or_a_frame_error(prefix, header, payload_bytes):
    limits = FrameLimits(max_header_bytes=1024, max_payload_bytes=1 << 20)
    try:
        parse_prefix(prefix, limits)
    except InvalidInput as error:
        assert error.field
    try:
        decoded = decode_header(header, payload_bytes)
        if "dtype" in decoded or "shape" in decoded:
            check_tensor_fields(decoded, payload_bytes)
    except InvalidInput as error:
        assert error.field


@FUZZ
@given(header=st.one_of(JSON_VALUES, st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(RUNNER_TO_COORDINATOR | COORDINATOR_TO_RUNNER))},
    optional={k: st.one_of(SCALARS, JSON_VALUES) for k in
              ("protocol", "nonce", "key", "proof", "signature", "peer_id", "name", "lat", "lon", "gpu",
               "free_vram_gb", "total_vram_gb", "utilization_pct", "power_w", "carbon_g_per_kwh", "tflops",
               "loaded", "deployment_id", "request_id", "session_id", "position", "dtype", "shape",
               "heartbeat_s", "reason", "error", "loaded_bytes", "total_bytes")})),
       payload=st.binary(max_size=16))
def test_any_coordinator_message_is_validated_or_names_the_field(header, payload):
    for allowed in (RUNNER_TO_COORDINATOR, COORDINATOR_TO_RUNNER):
        try:
            validate(header, payload, allowed)
        except InvalidInput as error:
            assert error.field


@FUZZ
@given(header=st.fixed_dictionaries({}, optional={k: st.one_of(SCALARS, JSON_VALUES) for k in
                                                  ("request_id", "session_id", "position", "want",
                                                   "all_positions", "route", "reply_to")}))
def test_any_runner_request_is_parsed_or_names_the_field(header):
    for parse in (parse_forward, parse_end_session):
        try:
            parse(header)
        except InvalidInput as error:
            assert error.field


@pytest.mark.parametrize("argv", [
    ["plan", "--model", "smollm2", "--peers", "/dev/zero"],
    ["plan", "--model", "smollm2", "--peers", "assets/swarms/demo.json", "--context", "1" * 5000],
    ["plan", "--model", "smollm2", "--peers", "assets/swarms/demo.json", "--weights", "carbon=1e400"],
    ["plan", "--model", "\x1b[31mred", "--peers", "assets/swarms/demo.json"],
    ["inspect-model", "smollm2", "--quant", "\ud800"],
])
def test_hostile_cli_arguments_end_in_one_error_line(capsys, argv):
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")


PEER = '{"id": "p1", "lat": 48.85, "lon": 2.35, "free_vram_gb": 80}'
INGRESS = '"ingress": {"name": "x", "lat": 50, "lon": 8}'


@pytest.mark.parametrize("what, peers_text, field", [
    ("nested 100,000 levels", '{"peers": ' + "[" * 100_000 + "]" * 100_000 + "}", "peers_file"),
    ("a 5,000-digit integer", "{" + INGRESS + ', "peers": [' + PEER.replace("80", "9" * 5000) + "]}", "peers_file"),
    ("an ANSI escape in an id", "{" + INGRESS + ', "peers": [' + PEER.replace("p1", "p\\u001b[2J") + "]}",
     "peers[0].id"),
    ("a newline in an id", "{" + INGRESS + ', "peers": [' + PEER.replace("p1", "p\\nq") + "]}", "peers[0].id"),
    ("a lone surrogate id", "{" + INGRESS + ', "peers": [' + PEER.replace("p1", "p\\ud800") + "]}", "peers[0].id"),
    ("tflops 1e-320", "{" + INGRESS + ', "peers": [' + PEER[:-1] + ', "tflops": 1e-320}]}', "peers[0].tflops"),
    ("carbon 1.7e308", "{" + INGRESS + ', "peers": [' + PEER[:-1] + ', "carbon_g_per_kwh": 1.7e308}]}',
     "peers[0].carbon_g_per_kwh"),
])
def test_the_peers_files_seen_crashing_now_end_in_one_error_naming_the_field(tmp_path, capsys, what, peers_text,
                                                                              field):
    path = tmp_path / "peers.json"
    path.write_text(peers_text)
    assert cli_main(["plan", "--model", "smollm2", "--peers", str(path), "--json"]) == 2, what
    err = capsys.readouterr().err
    assert err.startswith(f"error: {field}=") and err.count("\n") == 1, err[:200]


@pytest.mark.parametrize("overrides, field", [({"model_type": ["llama"]}, "model_type"),
                                              ({"hidden_size": 1e400}, "config.hidden_size")])
def test_the_model_configs_seen_crashing_now_end_in_one_error(tmp_path, capsys, overrides, field):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**SMOLLM2_CONFIG, **overrides}).replace("Infinity", "1e400"))
    assert cli_main(["plan", "--model", str(path), "--peers", "assets/swarms/demo.json"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {field}=")
