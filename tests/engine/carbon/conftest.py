from __future__ import annotations

import pytest

from engine.carbon.country import CountryLocator
from engine.carbon.datasets import CarbonTables, load_carbon_tables
from tests.engine.carbon.local_api import LocalElectricityMaps, start_local_api


@pytest.fixture(scope="session")
def tables() -> CarbonTables:
    return load_carbon_tables()


@pytest.fixture(scope="session")
def locator() -> CountryLocator:
    return CountryLocator()


@pytest.fixture
def local_api(monkeypatch: pytest.MonkeyPatch) -> LocalElectricityMaps:
    # A proxy from the environment must not swallow requests to 127.0.0.1.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    api, server = start_local_api()
    yield api
    server.shutdown()
    server.server_close()


class FakeClock:
    """Monotonic seconds the test advances by hand, to step over cache TTLs and pauses."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
