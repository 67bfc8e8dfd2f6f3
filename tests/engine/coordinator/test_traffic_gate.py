"""The ingress gate a migration switches plans through: requests in flight finish, new ones wait."""

from __future__ import annotations

import asyncio

import pytest

from engine.coordinator.replacement import RATE_WINDOW_S, TrafficGate


def test_closing_waits_for_requests_in_flight_and_holds_new_ones_until_reopened() -> None:
    async def scenario() -> list[str]:
        gate = TrafficGate()
        events: list[str] = []
        release_first = asyncio.Event()

        async def request(name: str, hold: asyncio.Event | None = None) -> None:
            async with gate.request() as record:
                events.append(f"{name} runs")
                if hold is not None:
                    await hold.wait()
                record["tokens"] = 10
            events.append(f"{name} done")

        first = asyncio.create_task(request("old", release_first))
        await asyncio.sleep(0)

        async def switch() -> None:
            async with gate.closed():
                events.append("switch")
                await asyncio.sleep(0.01)
            events.append("reopened")

        switching = asyncio.create_task(switch())
        await asyncio.sleep(0.01)
        late = asyncio.create_task(request("new"))
        await asyncio.sleep(0.01)
        assert events == ["old runs"]            # the switch waits for the old request; the new one waits too
        release_first.set()
        await asyncio.gather(first, switching, late)
        return events

    assert asyncio.run(scenario()) == ["old runs", "old done", "switch", "reopened", "new runs", "new done"]


def test_the_rate_is_requests_and_tokens_over_the_window() -> None:
    now = [1000.0]

    async def scenario() -> TrafficGate:
        gate = TrafficGate(clock=lambda: now[0])
        for tokens in (100, 300):
            async with gate.request() as record:
                record["tokens"] = tokens
        return gate

    gate = asyncio.run(scenario())
    assert gate.rate() is not None
    now[0] += 100.0
    rate = gate.rate()
    assert rate.requests_per_s == pytest.approx(2 / 100.0) and rate.tokens_per_request == 200.0
    now[0] += RATE_WINDOW_S + 1
    assert gate.rate() is None                   # nothing within the window any more
