"""The carbon parts of the CLI: `--signal average|marginal` on plan/compare, and `python -m engine carbon`.

`python -m engine carbon --lat 51.5 --lon -0.12 [--signal marginal] [--forecast] [--history] [--json]`
prints what Prismn knows for one location: the value with its source, kind, time and horizon, the
live sources consulted, and the forecast / past-24 h series when asked (or why there are none).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from engine.carbon_values import CarbonSignal, CarbonSource, SignalKind


def add_signal_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--signal", choices=[k.value for k in SignalKind], default=SignalKind.AVERAGE.value,
                        help="carbon intensity to plan with: grid average (default) or marginal "
                             "(WattTime MOER when WATTTIME_USERNAME/PASSWORD are set)")


def add_carbon_parser(sub: argparse._SubParsersAction, coordinate) -> None:
    carbon = sub.add_parser("carbon", help="what Prismn knows about grid carbon at one location")
    carbon.add_argument("--lat", type=coordinate("lat", 90.0), required=True)
    carbon.add_argument("--lon", type=coordinate("lon", 180.0), required=True)
    add_signal_flag(carbon)
    carbon.add_argument("--forecast", action="store_true", help="also the forecast series (when a source has one)")
    carbon.add_argument("--history", action="store_true", help="also the past 24 h")
    carbon.add_argument("--json", action="store_true")


def signal_summary(signals: Sequence[CarbonSignal], kind: str) -> str:
    """One line for plan/compare output: the signal asked for and where the peers' values came from."""
    counts = Counter(s.source.value + ("" if s.kind.value == kind else f" ({s.kind.value})") for s in signals)
    parts = ", ".join(f"{source} ×{n}" for source, n in counts.most_common())
    return f"carbon signal: {kind} — peers' values from {parts}"


def cmd_carbon(args: argparse.Namespace) -> int:
    from engine.carbon import CarbonResolver

    resolver = CarbonResolver()
    kind = SignalKind(args.signal)
    signal = resolver.signal(args.lat, args.lon, kind=kind)
    out: dict[str, object] = {
        "lat": args.lat, "lon": args.lon, "signal_requested": kind.value,
        "live_sources": [s.value for s in resolver.live_sources(kind)],
        "now": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "value": signal.to_dict(),
    }
    if kind is SignalKind.MARGINAL and CarbonSource.WATTTIME.value in out["live_sources"]:
        out["watttime_signal_index_percent"] = resolver.signal_index(args.lat, args.lon)
    if args.forecast:
        out["forecast"] = resolver.forecast(args.lat, args.lon, kind).to_dict()
    if args.history:
        out["history"] = resolver.history(args.lat, args.lon, kind).to_dict()
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(_describe(signal, out, resolver))
    return 0


def _describe(signal: CarbonSignal, out: dict, resolver) -> str:
    lines = [f"{signal.g_per_kwh:g} gCO2eq/kWh  {signal.kind.value}  from {signal.source.value}"
             f"{' (offline yearly average)' if signal.source.offline else ''}"
             f"{'  ' + signal.detail if signal.detail else ''}"]
    if signal.at is not None:
        lines.append(f"  for {signal.at.isoformat(timespec='minutes')} (horizon {signal.horizon_h:+g} h)")
    lines.append("  live sources consulted: " + (", ".join(out["live_sources"]) or "none"))
    if out.get("watttime_signal_index_percent") is not None:
        lines.append(f"  WattTime signal index: {out['watttime_signal_index_percent']:g} % "
                     "(0 = cleanest of the recent past)")
    for name in ("history", "forecast"):
        if name in out:
            series = out[name]
            points = series["points"]
            if points:
                values = [p["g_per_kwh"] for p in points]
                lines.append(f"  {name}: {len(points)} points from {points[0]['at']} to {points[-1]['at']}, "
                             f"min {min(values):g}, max {max(values):g} ({points[0]['source']})")
            else:
                lines.append(f"  {name}: none — {series['note']}")
    return "\n".join(lines)


