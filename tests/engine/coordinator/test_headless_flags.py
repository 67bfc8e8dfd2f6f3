"""The headless coordinator's re-placement flags reach a real Replacement and a real resolver; bad values
are refused naming the flag. (The end-to-end migration is test_headless_replacement.py, marked slow.)"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from engine.carbon_values import CarbonSource, SignalKind
from engine.coordinator import __main__ as headless
from engine.coordinator import server
from engine.coordinator.replacement import DEFAULT_PERIOD_S, MigrationRecord
from engine.planning.replacement import DEFAULT_HORIZON_H, DEFAULT_THRESHOLD, MigrationDecision
from tests.engine.carbon.fake_grids import start_fake_grids


def parse(*flags: str):
    return headless.build_parser().parse_args(list(flags))


def test_by_default_it_re_places_automatically_every_15_minutes_on_the_average_signal():
    args = parse()
    assert (args.replan, args.replan_every, args.replan_threshold, args.replan_horizon_h, args.signal) == (
        "auto", DEFAULT_PERIOD_S, DEFAULT_THRESHOLD, DEFAULT_HORIZON_H, "average")
    assert DEFAULT_PERIOD_S == 15 * 60


@pytest.mark.parametrize("text, seconds", [("15", 900.0), ("90s", 90.0), ("15m", 900.0), ("1.5h", 5400.0),
                                           ("0.5", 30.0)])
def test_the_period_reads_minutes_or_a_duration(text, seconds):
    assert parse("--replan-every", text).replan_every == seconds


@pytest.mark.parametrize("flags, field", [
    (("--replan-every", "0"), "replan_every"), (("--replan-every=-5m",), "replan_every"),
    (("--replan-every", "soon"), "replan_every"), (("--replan-every", "inf"), "replan_every"),
    (("--replan-threshold", "1.5"), "replan_threshold"), (("--replan-threshold", "-0.1"), "replan_threshold"),
    (("--replan-horizon-h", "0"), "replan_horizon_h"), (("--replan-horizon-h", "nan"), "replan_horizon_h"),
])
def test_a_bad_value_is_refused_naming_its_flag(flags, field, capsys):
    assert headless.main(["--api-bind", "none", *flags]) == 2
    assert field in capsys.readouterr().err


def test_ask_is_not_a_headless_mode(capsys):
    with pytest.raises(SystemExit):
        parse("--replan", "ask")
    assert "invalid choice" in capsys.readouterr().err


def test_the_flags_reach_the_coordinators_replacement(tmp_path):
    args = parse("--replan-every", "2m", "--replan-threshold", "0.25", "--replan-horizon-h", "3",
                 "--signal", "marginal")

    async def main():
        running = await server.start(f"sqlite:{tmp_path}/store.sqlite3", transport="tcp", bind_host="127.0.0.1")
        try:
            replacement = headless.replacement_for(running, headless.carbon_resolver(args), args)
            assert replacement.coordinator is running.coordinator and replacement.orchestrator is running.orchestrator
            assert (replacement.mode, replacement.period_s, replacement.threshold, replacement.horizon_h,
                    replacement.signal) == ("auto", 120.0, 0.25, 3.0, SignalKind.MARGINAL)
            assert await replacement.check() is None           # nothing deployed: nothing to re-place
        finally:
            await running.close()
    asyncio.run(main())


def test_the_carbon_sources_come_from_the_environment_and_are_never_older_than_one_period(monkeypatch):
    grids = start_fake_grids()
    try:
        grids.set_zone("DE", 50.11, 8.68, 400, marginal=600)
        for key, value in {"ELECTRICITYMAPS_TOKEN": grids.token, "ELECTRICITYMAPS_API_URL": grids.url + "/em",
                           "WATTTIME_USERNAME": "wt-user", "WATTTIME_PASSWORD": "wt-pass",
                           "WATTTIME_API_URL": grids.url + "/wt", "PRISMN_NATIONALGRID": "0",
                           "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}.items():
            monkeypatch.setenv(key, value)
        resolver = headless.carbon_resolver(parse("--replan-every", "1s"))
        assert resolver.live_sources() == [CarbonSource.ELECTRICITYMAPS]
        assert resolver.live_sources(SignalKind.MARGINAL) == [CarbonSource.WATTTIME]
        first = resolver.signals([50.11], [8.68])[0]
        assert (first.g_per_kwh, first.source) == (400, CarbonSource.ELECTRICITYMAPS)
        grids.set_zone("DE", 50.11, 8.68, 900)
        time.sleep(1.1)                                    # one period later the cache has let it go
        assert resolver.signals([50.11], [8.68])[0].g_per_kwh == 900
    finally:
        grids.stop()


def test_each_check_and_each_finished_migration_is_printed_once(tmp_path, capsys):
    args = parse()

    async def main():
        running = await server.start(f"sqlite:{tmp_path}/store.sqlite3", transport="tcp", bind_host="127.0.0.1")
        try:
            replacement = headless.replacement_for(running, headless.carbon_resolver(args), args)
            decision = MigrationDecision(True, "saves 60.0% gCO2/1k tokens; repaid in 0.1 min", 10.0, 4.0, 0.6,
                                         2.0, 0.01, 1.0, 0.1, 6.0, 1.0, 1.99, ("warsaw",))
            replacement.last_decision = decision
            record = MigrationRecord(datetime.now(UTC).timestamp(), ("paris", "madrid"), ("madrid", "warsaw"),
                                     decision, "auto")
            replacement.history.append(record)
            replacement.on_change()                          # checked: the move is under way
            replacement.on_change()                          # nothing new
            record.outcome, record.took_s = "done", 4.2
            replacement.on_change()                          # moved
        finally:
            await running.close()
    asyncio.run(main())
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line.startswith(("replan:", "migrated"))] == [
        "replan: migrate: saves 60.0% gCO2/1k tokens; repaid in 0.1 min",
        "migrated paris,madrid -> madrid,warsaw: done in 4.2 s (estimated saving 60% gCO2/1k tokens, move 0.01 g)",
    ]
