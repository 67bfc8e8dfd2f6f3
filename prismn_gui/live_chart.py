"""A live chart under the prompt: tokens/s and cumulative gCO2 over the request, estimates as reference.

While tokens stream in, tokens/s is the running rate of arrivals and gCO2 follows the plan's estimate;
when the generation ends, both curves are redrawn from what the ingress measured (each step's time,
each stage's energy). The plan's estimates are dashed lines: 1000 / est_ms_per_token tokens/s, and
gCO2/1k tokens × tokens so far.
"""

from __future__ import annotations

import time
from typing import Any

import customtkinter as ctk
from matplotlib.backends.backend_tkagg import FigureCanvasTkAgg
from matplotlib.figure import Figure

from engine.plan import Plan

RATE_COLOUR = "#1f77b4"
CO2_COLOUR = "#2ca02c"


def measured_series(result: dict[str, Any]) -> tuple[list[int], list[float], list[float]]:
    """(token index, tokens/s so far, cumulative gCO2) from a generation's measurements."""
    measured = result.get("measured") or {}
    step_ms = measured.get("step_ms") or []
    grams = measured.get("cumulative_g_co2") or []
    tokens, rates, elapsed_ms = [], [], 0.0
    for index, ms in enumerate(step_ms, start=1):
        elapsed_ms += ms
        tokens.append(index)
        rates.append(index / (elapsed_ms / 1000.0) if elapsed_ms > 0 else 0.0)
    return tokens, rates, list(grams[:len(tokens)])


class LiveChart(ctk.CTkFrame):
    def __init__(self, parent: Any, dark: bool = False) -> None:
        super().__init__(parent, fg_color="transparent")
        face = "#2b2b2b" if dark else "#ffffff"
        self.ink = "#e6e6e6" if dark else "#1a1a1a"
        self.figure = Figure(figsize=(3.4, 1.04), dpi=100, facecolor=face)
        self.rate_axes = self.figure.add_axes((0.13, 0.27, 0.72, 0.58), facecolor=face)
        self.co2_axes = self.rate_axes.twinx()
        self.canvas = FigureCanvasTkAgg(self.figure, master=self)
        self.canvas.get_tk_widget().pack(fill="both", expand=True)
        self._plan: Plan | None = None
        self._started_s = 0.0
        self._arrivals: list[float] = []
        self.points = 0
        self._plot([], [], [], "Generate to see tokens/s and gCO2 over the request")

    def begin(self, plan: Plan | None) -> None:
        self._plan, self._started_s, self._arrivals = plan, time.monotonic(), []
        self._plot([], [], [], "generating…")

    def token(self) -> None:
        """A streamed delta arrived: redraw at most a few times per second."""
        self._arrivals.append(time.monotonic() - self._started_s)
        if len(self._arrivals) % 4 == 1:
            tokens = list(range(1, len(self._arrivals) + 1))
            rates = [n / t if t > 0 else 0.0 for n, t in zip(tokens, self._arrivals, strict=True)]
            est = self._est_g_per_token()
            self._plot(tokens, rates, [n * est for n in tokens] if est is not None else [], "generating…")

    def finish(self, result: dict[str, Any]) -> None:
        tokens, rates, grams = measured_series(result)
        method = (result.get("measured") or {}).get("energy_method") or ""
        self._plot(tokens, rates, grams, f"measured ({method})")

    def _est_g_per_token(self) -> float | None:
        metrics = self._plan.metrics if self._plan is not None else None
        return metrics.g_co2_per_1k_tokens / 1000.0 if metrics else None

    def _plot(self, tokens: list[int], rates: list[float], grams: list[float], title: str) -> None:
        self.points = len(tokens)
        rate_axes, co2_axes = self.rate_axes, self.co2_axes
        rate_axes.clear()
        co2_axes.clear()
        co2_axes.yaxis.set_label_position("right")
        rate_axes.plot(tokens, rates, color=RATE_COLOUR, linewidth=1.4, label="tokens/s")
        if grams:
            co2_axes.plot(tokens[:len(grams)], grams, color=CO2_COLOUR, linewidth=1.4, label="gCO2 (cumulative)")
        metrics = self._plan.metrics if self._plan is not None else None
        if metrics is not None and tokens:
            rate_axes.axhline(1000.0 / metrics.est_ms_per_token, color=RATE_COLOUR, linestyle="--", linewidth=0.9)
            est = metrics.g_co2_per_1k_tokens / 1000.0
            co2_axes.plot([0, tokens[-1]], [0, est * tokens[-1]], color=CO2_COLOUR, linestyle="--", linewidth=0.9)
        for axes, label, colour in ((rate_axes, "tokens/s", RATE_COLOUR), (co2_axes, "gCO2", CO2_COLOUR)):
            axes.set_ylabel(label, color=colour, fontsize=7)
            axes.tick_params(labelsize=6, colors=self.ink)
        rate_axes.set_xlabel("token", fontsize=7, color=self.ink, labelpad=1)
        rate_axes.set_title(f"{title} · dashed: estimate", fontsize=6, color=self.ink, pad=2)
        rate_axes.set_ylim(bottom=0)
        co2_axes.set_ylim(bottom=0)
        self.canvas.draw_idle()
