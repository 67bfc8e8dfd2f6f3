"""Carbon-intensity value types shared by the carbon shell and the planning core (neither imports the other).

Every intensity Prismn holds says where it came from (`CarbonSource`), what it measures (`SignalKind`),
for which moment it holds (`at`), and how far ahead of the fetch that moment was (`horizon_h`):
0 for a measured or latest value, > 0 for a forecast, < 0 for history, None for a yearly table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum


class CarbonSource(StrEnum):
    EXPLICIT = "explicit"                # the peer states its own value
    ELECTRICITYMAPS = "electricitymaps"  # Electricity Maps API v3 (live / history / forecast)
    NATIONALGRID = "nationalgrid"        # GB National Grid ESO carbon-intensity API
    WATTTIME = "watttime"                # WattTime API v3, marginal (MOER)
    REGION = "region"                    # offline: Google Cloud region yearly average
    COUNTRY = "country"                  # offline: Electricity Maps 2025 / Ember yearly country average
    DEFAULT = "default"                  # offline: Ember world yearly average

    @property
    def offline(self) -> bool:
        """A shipped yearly average: the fallback when no live source answers."""
        return self in (CarbonSource.REGION, CarbonSource.COUNTRY, CarbonSource.DEFAULT)


class SignalKind(StrEnum):
    AVERAGE = "average"     # grid-average (attributional): what the whole mix emits per kWh
    MARGINAL = "marginal"   # marginal (consequential): what one more kWh makes the grid emit


@dataclass(frozen=True)
class CarbonSignal:
    g_per_kwh: float
    source: CarbonSource
    kind: SignalKind
    at: datetime | None = None       # the moment the value holds for (UTC); None for yearly tables
    horizon_h: float | None = None   # hours between the fetch and `at`; None for yearly tables
    detail: str = ""                 # zone / region / table, e.g. "DE", "GB region 13 London"

    def age_s(self, now: datetime) -> float | None:
        """Seconds since the value's moment (negative for a forecast value); None for a yearly table."""
        return None if self.at is None else (now - self.at).total_seconds()

    def to_dict(self) -> dict[str, object]:
        return {
            "g_per_kwh": self.g_per_kwh,
            "source": self.source.value,
            "kind": self.kind.value,
            "at": None if self.at is None else self.at.isoformat().replace("+00:00", "Z"),
            "horizon_h": self.horizon_h,
            "offline": self.source.offline,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class CarbonSeries:
    """A time series (history or forecast) from one source, oldest first; `note` says why it is empty."""

    points: tuple[CarbonSignal, ...] = ()
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"points": [p.to_dict() for p in self.points], "note": self.note}


def utc(text: str) -> datetime:
    """An ISO 8601 time as the APIs write it ('2026-12-02T10:30Z', '...:00.000Z', '+00:00') -> aware UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
