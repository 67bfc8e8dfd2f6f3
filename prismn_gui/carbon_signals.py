"""How the app shows a peer's carbon signal: source, kind and age in a few characters.

Used by the stage table (and meant for the map's peer hover): "EMaps avg 12m" says the value
came from Electricity Maps, is a grid average, and holds for a moment 12 minutes ago; "country avg yr"
is a shipped yearly average (the offline fallback).
"""

from __future__ import annotations

from datetime import UTC, datetime

from engine.carbon_values import CarbonSignal, SignalKind

SHORT_SOURCE = {"electricitymaps": "EMaps", "nationalgrid": "NGrid", "watttime": "WattTime",
                "explicit": "stated", "region": "region", "country": "country", "default": "world"}
SHORT_KIND = {SignalKind.AVERAGE: "avg", SignalKind.MARGINAL: "marg"}


def age_text(signal: CarbonSignal, now: datetime | None = None, short: bool = False) -> str:
    """How old the value is ('12 min', '3 h'; 'in 30 min' for a forecast), 'yearly' for the tables."""
    if signal.at is None:
        return ("yr" if short else "yearly") if signal.source.offline else ""   # a stated value has no age
    seconds = signal.age_s(now or datetime.now(UTC)) or 0.0
    ahead = seconds < 0
    seconds = abs(seconds)
    minutes, hours = ("m", "h") if short else (" min", " h")
    text = f"{seconds / 60:.0f}{minutes}" if seconds < 5400 else f"{seconds / 3600:.0f}{hours}"
    return f"in {text}" if ahead else text


def signal_label(signal: CarbonSignal, now: datetime | None = None) -> str:
    """'EMaps avg 12m': short enough for the stage table."""
    return f"{SHORT_SOURCE.get(signal.source.value, signal.source.value)} {SHORT_KIND[signal.kind]} " \
           f"{age_text(signal, now, short=True)}".rstrip()


def signal_hover(signal: CarbonSignal, now: datetime | None = None) -> str:
    """Longer text for a hover: value, kind, source, detail and age."""
    return (f"{signal.g_per_kwh:.0f} gCO2/kWh {signal.kind.value} from {signal.source.value}"
            f"{' (offline)' if signal.source.offline else ''}"
            f"{', ' + signal.detail if signal.detail else ''}"
            f"{'; ' + age_text(signal, now) if age_text(signal, now) else ''}")


def add_signal_toggle(frame, rows, on_change):
    """The "Carbon signal: average | marginal" toggle in the controls; returns the segmented button."""
    import customtkinter as ctk

    small = ctk.CTkFont(size=12)
    rows.add(ctk.CTkLabel(frame, text="Carbon signal", font=small, anchor="w"), pady=(8, 0))
    toggle = ctk.CTkSegmentedButton(frame, values=[k.value for k in SignalKind],
                                    command=lambda _v: on_change(), font=small)
    toggle.set(SignalKind.AVERAGE.value)
    rows.add(toggle)
    return toggle
