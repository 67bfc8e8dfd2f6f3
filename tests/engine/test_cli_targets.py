"""`engine plan` / `compare` with targets, placement by country and --exact: exit codes and JSON."""

import json

import pytest

from engine.cli import main
from engine.plan import Plan
from tests.engine.test_cli import DEMO, run_cli

PARIS_FRANKFURT = {"paris-a100": "FR", "frankfurt-h100": "DE"}


def cli_json(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, (json.loads(out.out) if out.out.strip() else None), out.err


def test_countries_restrict_both_plans_and_a_latency_target_binds_with_exit_3(capsys):
    code, data, _ = cli_json(capsys, "compare", "--model", "llama-3.1-70b", "--peers", DEMO,
                             "--allow-countries", "de,FR", "--json")
    assert code == 0
    for plan in data.values():
        parsed = Plan.from_dict(plan)
        assert parsed.targets == {"allow_countries": ["DE", "FR"]}
        # Demo peers are named after their cities; every stage is in Germany or France.
        assert all(s.peer_id.split("-")[0] in {"frankfurt", "paris", "munich", "berlin", "hamburg",
                                                "marseille", "lyon", "dusseldorf", "strasbourg"}
                   for s in parsed.stages), [s.peer_id for s in parsed.stages]
    code, data, _ = cli_json(capsys, "plan", "--model", "llama-3.1-70b", "--peers", DEMO,
                             "--allow-countries", "DE,FR", "--max-ms-per-token", "5", "--json")
    assert code == 3
    assert data["feasible"] is False and data["stages"] == []
    binding = data["binding"]
    assert binding["constraint"] == "max_ms_per_token" and binding["asked"] == 5.0
    assert binding["message"].startswith("the lowest ms/token found with peers in DE, FR is ")
    assert binding["message"].endswith(", above the 5 asked")


def test_exact_mode_prints_a_certificate(capsys):
    code, data, _ = cli_json(capsys, "plan", "--model", "llama-3.1-70b", "--peers", DEMO,
                             "--allow-countries", "DE,FR,NL,BE,CH", "--exact", "--json")
    assert code == 0
    cert = data["certificate"]
    assert cert["bound"] <= cert["optimum"] + 1e-9 <= cert["objective"] + 2e-9
    assert cert["gap"] >= 0 and cert["solver"].startswith("HiGHS")
    Plan.from_dict(data)
    code = main(["compare", "--model", "llama-3.1-70b", "--peers", DEMO, "--max-peers", "3",
                 "--allow-countries", "DE,FR", "--exact"])
    text = capsys.readouterr().out
    assert code == 0 and "greedy plan within " in text and "% of optimal" in text


@pytest.mark.parametrize(("flag", "value", "field"), [
    ("--max-ms-per-token", "fast", "max_ms_per_token"),
    ("--max-ms-per-token", "-3", "max_ms_per_token"),
    ("--max-g-co2-per-1k", "-0.1", "max_g_co2_per_1k"),
    ("--max-peers", "0", "max_peers"),
    ("--max-peers", "two", "max_peers"),
    ("--allow-countries", "Germany", "allow_countries"),
    ("--deny-countries", ",", "deny_countries"),
    ("--exclude-peers", "no-such-peer", "exclude_peers"),
    ("--time-limit", "0", "time_limit"),
])
def test_bad_target_values_exit_2_naming_the_field(capsys, flag, value, field):
    args = ["plan", "--model", "llama-3.1-8b", "--peers", DEMO, f"{flag}={value}"]
    if flag == "--time-limit":
        args.append("--exact")
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and field in err


def test_the_command_line_exits_3_when_max_peers_binds():
    result = run_cli("compare", "--model", "llama-3.1-70b", "--peers", DEMO, "--max-peers", "1")
    assert result.returncode == 3, result.stderr
    assert "infeasible: the fewest peers found is 2, above the 1 asked" in result.stdout
