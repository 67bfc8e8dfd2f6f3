"""The timeline chart of the "Carbon 24 h" tab and the series it is drawn from.

`fetch_series` (a shell: HTTP through CarbonResolver) gathers each peer's history + forecast;
`draw_timeline` draws the pure engine.planning.carbon_time points: the carbon plan's gCO2 per 1k
tokens (solid before now, dashed after), the swarm's cleanest and dirtiest peer on a second axis,
and a line at now. Without any live series the chart says the values are held flat, and why.
"""

from __future__ import annotations

from datetime import UTC, datetime

import matplotlib.dates as mdates

MAX_SERIES_PEERS = 200        # beyond this, series are fetched for the plan's peers only


def fetch_series(resolver, peers, signal: str, stage_ids: set[str]) -> tuple[dict, str]:
    """{peer id: ((moment, g), ...)} from history + forecast, and a note when none came."""
    if not resolver.live_sources(signal):
        return {}, resolver.forecast(peers[0].lat, peers[0].lon, signal).note if peers else ""
    chosen = peers if len(peers) <= MAX_SERIES_PEERS else [p for p in peers if p.id in stage_ids]
    out, notes = {}, []
    for peer in chosen:
        points = []
        for series in (resolver.history(peer.lat, peer.lon, signal), resolver.forecast(peer.lat, peer.lon, signal)):
            points.extend((p.at, p.g_per_kwh) for p in series.points)
            if not series.points and series.note:
                notes.append(series.note)
        if points:
            out[peer.id] = tuple(sorted(points))
    return out, "" if out else (notes[0] if notes else "no series")


def draw_message(fig, text: str) -> None:
    fig.clear()
    fig.text(0.02, 0.5, text, fontsize=9)


def draw_timeline(fig, now: datetime, points, note: str) -> None:
    fig.clear()
    if not points:
        return draw_message(fig, "No feasible carbon plan to follow.")
    ax = fig.add_subplot(111)
    fig.subplots_adjust(left=0.09, right=0.88, top=0.86, bottom=0.13)
    times = [p.at for p in points]
    plan = [p.plan_g_per_1k_tokens for p in points]
    past = [i for i, t in enumerate(times) if t <= now]
    future = [i for i, t in enumerate(times) if t >= now]
    ax.plot([times[i] for i in past], [plan[i] for i in past], color="#7b2cbf", lw=2, label="carbon plan (history)")
    ax.plot([times[i] for i in future], [plan[i] for i in future], color="#7b2cbf", lw=2, ls="--",
            label="carbon plan (forecast)")
    ax.set_ylabel("gCO2 / 1k tokens", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_ylim(bottom=0)
    twin = ax.twinx()
    twin.plot(times, [p.cleanest_g_per_kwh for p in points], color="#2a9d8f", lw=1, label="cleanest peer")
    twin.plot(times, [p.dirtiest_g_per_kwh for p in points], color="#e76f51", lw=1, label="dirtiest peer")
    twin.set_ylabel("gCO2 / kWh", fontsize=8)
    twin.tick_params(labelsize=7)
    twin.set_ylim(bottom=0)
    ax.axvline(now, color="gray", lw=1)
    ax.annotate(f"now {now:%H:%M} UTC", (now, 0), xytext=(3, 3), textcoords="offset points", fontsize=7,
                color="gray")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=UTC))
    lines = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    fig.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="upper center", ncol=4,
               frameon=False)
    if not any(p.known for p in points):
        ax.text(0.5, 0.5, f"No live history or forecast: values held flat.\n{note}"[:160],
                transform=ax.transAxes, ha="center", va="center", fontsize=7, wrap=True)
