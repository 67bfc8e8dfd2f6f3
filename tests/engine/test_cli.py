"""The CLI contract other parts depend on: JSON schema, exit codes, one-line errors."""

import json
import subprocess
import sys

import pytest

from engine.paths import REPO_ROOT
from engine.plan import SCHEMA, Plan

DEMO = str(REPO_ROOT / "assets" / "swarms" / "demo.json")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


def _swarm_file(tmp_path, peers, ingress=None):
    path = tmp_path / "peers.json"
    path.write_text(json.dumps({"ingress": ingress or {"name": "Paris", "lat": 48.86, "lon": 2.35},
                                "peers": peers}))
    return str(path)


def test_plan_prints_a_valid_feasible_plan_in_the_schema():
    result = run_cli("plan", "--model", "llama-3.1-8b", "--peers", DEMO, "--policy", "carbon",
                     "--weights", "carbon=0.6,distance=0.3,vram=0.1", "--quant", "bf16", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["schema"] == SCHEMA and data["feasible"] is True
    assert data["model"]["param_count"] == 8_030_261_248
    plan = Plan.from_dict(data)  # validates contiguity and ends
    assert plan.metrics.peers_used == len(plan.stages)
    assert set(data["metrics"]) == {"peers_used", "tour_km", "avg_carbon_g_per_kwh", "est_ms_per_token",
                                    "g_co2_per_1k_tokens", "vram_utilization"}


def test_an_infeasible_request_exits_3_with_its_shortfall(tmp_path):
    peers = [{"id": "small", "lat": 48.0, "lon": 2.0, "free_vram_gb": 4.0, "carbon_g_per_kwh": 50}]
    result = run_cli("plan", "--model", "llama-3.1-8b", "--peers", _swarm_file(tmp_path, peers), "--json")
    assert result.returncode == 3
    data = json.loads(result.stdout)
    assert data["feasible"] is False and data["stages"] == []
    assert data["shortfall_gb"] > 10 and data["shortfall_layers"] > 0


def test_a_context_too_large_for_any_peer_is_infeasible_not_a_crash():
    # 1e20 tokens of KV cache overflowed int64 in the planner (a traceback, exit 1).
    result = run_cli("plan", "--model", "llama-3.1-8b", "--peers", DEMO,
                     "--context", "99999999999999999999", "--json")
    assert result.returncode == 3, result.stderr
    data = json.loads(result.stdout)
    assert data["feasible"] is False and data["shortfall_layers"] == 32


@pytest.mark.parametrize(
    ("peer_patch", "extra_args", "named"),
    [
        ({"lat": 123.0}, [], "lat"),
        ({"free_vram_gb": -1}, [], "free_vram_gb"),
        ({"free_vram_gb": "NaN"}, [], "free_vram_gb"),
        ({}, ["--model", "no-such-model-xyz"], "no-such-model-xyz"),
        ({}, ["--weights", "carbon=abc"], "weights.carbon"),
        ({}, ["--ingress", "95,0"], "ingress.lat"),
        ({}, ["--quant", "int3"], "int3"),
    ],
)
def test_bad_input_exits_2_with_one_line_naming_the_field(tmp_path, peer_patch, extra_args, named):
    peer = {"id": "p", "lat": 48.0, "lon": 2.0, "free_vram_gb": 80.0}
    peer.update(peer_patch)
    text = json.dumps({"ingress": {"name": "x", "lat": 0, "lon": 0}, "peers": [peer]})
    text = text.replace('"NaN"', "NaN")
    path = tmp_path / "peers.json"
    path.write_text(text)
    args = ["plan", "--model", "llama-3.2-1b", "--peers", str(path), "--json"]
    for i in range(0, len(extra_args), 2):
        flag, value = extra_args[i], extra_args[i + 1]
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    result = run_cli(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], result.stderr


def test_inspect_model_reports_exact_sizes():
    result = run_cli("inspect-model", "llama-3.1-8b", "--quant", "bf16", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["param_count"] == 8_030_261_248 and info["num_layers"] == 32
    assert info["bytes"]["kv_per_token_per_layer"] == 2 * 8 * 128 * 2
    assert info["bytes"]["per_layer"] == 2 * info["layer_param_count"]


def test_compare_shows_both_policies_side_by_side():
    result = run_cli("compare", "--model", "llama-3.1-70b", "--peers", DEMO)
    assert result.returncode == 0, result.stderr
    assert "VRAM-only" in result.stdout and "carbon+distance" in result.stdout
    assert "gCO2 / 1k tokens" in result.stdout and "%" in result.stdout


def test_a_usage_error_names_the_arguments_main_was_given(monkeypatch, capsys):
    # main(argv) called in-process (GUI, tests) named sys.argv, not the arguments it parsed.
    from engine.cli import EXIT_BAD_INPUT, main

    monkeypatch.setattr(sys, "argv", ["prismn", "unrelated"])
    assert main(["plan", "--model", "smollm2-135m", "--peers", DEMO, "--bogus"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--bogus" in err and "unrelated" not in err


def test_an_error_quoting_a_path_with_a_newline_stays_on_one_line(tmp_path):
    folder = tmp_path / "two\nlines"
    folder.mkdir()
    result = run_cli("inspect-model", str(folder))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "holds no config.json" in result.stderr


def test_inspect_sizes_int4_as_held_on_the_device_kind_and_refuses_others():
    cpu = json.loads(run_cli("inspect-model", "smollm2", "--quant", "int4", "--device-kind", "cpu", "--json").stdout)
    cuda = json.loads(run_cli("inspect-model", "smollm2", "--quant", "int4", "--json").stdout)
    assert cpu["device_kind"] == "cpu" and cuda["device_kind"] == "cuda"
    # CPU: one byte per int4 value, groups of 64 on 576-wide rows; CUDA: packed, rows padded to 1024
    assert cpu["bytes"]["per_layer"] == 3_686_400 and cuda["bytes"]["per_layer"] != cpu["bytes"]["per_layer"]
    bad = run_cli("inspect-model", "smollm2", "--device-kind", "tpu")
    assert bad.returncode == 2 and "device-kind" in bad.stderr
