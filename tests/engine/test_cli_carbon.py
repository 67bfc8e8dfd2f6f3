"""`python -m engine carbon` and `--signal` on plan/compare, against the fake grid APIs on 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from engine.cli import EXIT_BAD_INPUT, EXIT_OK, main
from tests.engine.carbon.fake_grids import FakeGrids, start_fake_grids

BERLIN = (52.52, 13.405)
PARIS = (48.8566, 2.3522)


@pytest.fixture
def grids(monkeypatch: pytest.MonkeyPatch) -> FakeGrids:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    server = start_fake_grids()
    server.set_zone("DE", *BERLIN, 300, marginal=600)
    server.set_zone("FR", *PARIS, 40, marginal=450)
    monkeypatch.setenv("ELECTRICITYMAPS_TOKEN", server.token)
    monkeypatch.setenv("ELECTRICITYMAPS_API_URL", server.url + "/em")
    yield server
    server.stop()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_carbon_json_prints_value_source_kind_time_and_forecast(grids, capsys) -> None:
    code, out, _ = run(capsys, "carbon", "--lat", "52.52", "--lon", "13.4", "--forecast", "--json")
    assert code == EXIT_OK
    report = json.loads(out)
    assert report["value"]["g_per_kwh"] == 300 and report["value"]["source"] == "electricitymaps"
    assert report["value"]["kind"] == "average" and report["value"]["at"].endswith("Z")
    assert len(report["forecast"]["points"]) == 24
    assert report["live_sources"] == ["electricitymaps"]


def test_carbon_says_clearly_when_the_plan_refuses_forecasts(grids, capsys) -> None:
    grids.forecast_allowed = False
    code, out, _ = run(capsys, "carbon", "--lat", "52.52", "--lon", "13.4", "--forecast")
    assert code == EXIT_OK
    assert "300 gCO2eq/kWh  average  from electricitymaps" in out
    assert "forecast: none" in out and "paid Electricity Maps plan" in out


def test_plan_with_the_marginal_signal_uses_watttime(grids, capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("WATTTIME_USERNAME", "wt-user")
    monkeypatch.setenv("WATTTIME_PASSWORD", "wt-pass")
    monkeypatch.setenv("WATTTIME_API_URL", grids.url + "/wt")
    peers = tmp_path / "peers.json"
    peers.write_text(json.dumps({"ingress": {"lat": 50.1, "lon": 8.7}, "peers": [
        {"id": "berlin", "lat": BERLIN[0], "lon": BERLIN[1], "free_vram_gb": 40, "gpu": "A100 80GB"},
        {"id": "paris", "lat": PARIS[0], "lon": PARIS[1], "free_vram_gb": 40, "gpu": "A100 80GB"}]}))
    args = ("plan", "--model", "llama-3.2-1b", "--peers", str(peers), "--json")
    average = json.loads(run(capsys, *args)[1])
    marginal = json.loads(run(capsys, *args, "--signal", "marginal")[1])
    assert {s["carbon_source"] for s in average["stages"]} == {"electricitymaps"}
    assert {s["carbon_source"] for s in marginal["stages"]} == {"watttime"}
    assert marginal["stages"][0]["carbon_g_per_kwh"] == pytest.approx(450.0, abs=0.1)
    code, out, _ = run(capsys, "compare", "--model", "llama-3.2-1b", "--peers", str(peers), "--signal", "marginal")
    assert code == EXIT_OK and "carbon signal: marginal — peers' values from watttime ×2" in out
    code, out, _ = run(capsys, "carbon", "--lat", "48.85", "--lon", "2.35", "--signal", "marginal", "--forecast",
                       "--json")
    report = json.loads(out)
    assert report["value"]["source"] == "watttime" and report["value"]["kind"] == "marginal"
    assert report["watttime_signal_index_percent"] == 42.0 and len(report["forecast"]["points"]) == 288


def test_a_bad_signal_or_coordinate_names_the_field(capsys) -> None:
    code, _, err = run(capsys, "carbon", "--lat", "51", "--lon", "200")
    assert code == EXIT_BAD_INPUT and err.startswith("error: lon=200.0") and err.count("\n") == 1
    code, _, err = run(capsys, "plan", "--model", "llama-3.2-1b", "--peers", "x.json", "--signal", "green")
    assert code == EXIT_BAD_INPUT and "--signal" in err and "green" in err
