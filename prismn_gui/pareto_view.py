"""The Pareto tab: the engine's weight sweep as gCO2/1k tokens vs ms/token.

`ParetoFigure` is plain matplotlib (testable on Agg). The current weights' carbon+distance plan is
highlighted; clicking a frontier point calls `on_pick(weights)` so the sliders can follow.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.planning.types import Weights
from prismn_gui.map_view import THEMES
from prismn_gui.viewmodel import ParetoEntry, ParetoOutcome


class ParetoFigure:
    def __init__(self, figure, on_pick: Callable[[Weights], None], theme: str = "light") -> None:
        self.figure = figure
        self._on_pick = on_pick
        self._theme = THEMES[theme]
        figure.set_facecolor(self._theme["figure"])
        self.ax = figure.add_subplot(111)
        self._entries: tuple[ParetoEntry, ...] = ()
        self._frontier = None
        self._current = None
        self._message = None
        self._style_axes()
        figure.canvas.mpl_connect("pick_event", self._picked)

    def _style_axes(self) -> None:
        text = self._theme["text"]
        self.ax.set_facecolor(self._theme["figure"])
        self.ax.set_xlabel("est. ms / token", color=text)
        self.ax.set_ylabel("gCO2 / 1k tokens", color=text)
        self.ax.set_title("Carbon vs latency across weights (click a point to use its weights)",
                          color=text, fontsize=9)
        self.ax.tick_params(colors=text, labelsize=8)
        for spine in self.ax.spines.values():
            spine.set_color(text)
        self.ax.grid(True, alpha=0.25)

    def show_sweep(self, outcome: ParetoOutcome) -> None:
        self._entries = outcome.entries
        for artist in (self._frontier, self._message):
            if artist is not None:
                artist.remove()
        self._frontier = self._message = None
        if outcome.error or not outcome.entries:
            self._message = self.ax.text(0.5, 0.5, outcome.error or "no feasible plan in the sweep",
                                         transform=self.ax.transAxes, ha="center", va="center",
                                         color="#e5484d", wrap=True, fontsize=9)
            return
        xs = [e.est_ms_per_token for e in outcome.entries]
        ys = [e.g_co2_per_1k_tokens for e in outcome.entries]
        (self._frontier,) = self.ax.plot(xs, ys, "o-", color="#7b2cbf", markersize=7, linewidth=1.2,
                                         picker=6, label="Pareto frontier", zorder=3)
        self.ax.relim()
        self.ax.autoscale_view()
        self._refresh_legend()

    def show_current(self, ms_per_token: float | None, g_co2_per_1k: float | None) -> None:
        if self._current is not None:
            self._current.remove()
            self._current = None
        if ms_per_token is None or g_co2_per_1k is None:
            return
        (self._current,) = self.ax.plot([ms_per_token], [g_co2_per_1k], marker="*", markersize=18,
                                        color="#ffd60a", markeredgecolor="#111111", linestyle="none",
                                        label="current weights", zorder=4)
        self._refresh_legend()

    def _refresh_legend(self) -> None:
        if self._frontier is None and self._current is None:
            return
        legend = self.ax.legend(loc="upper right", fontsize=8, facecolor=self._theme["figure"],
                                edgecolor=self._theme["text"])
        for text in legend.get_texts():
            text.set_color(self._theme["text"])

    def display_points(self) -> list[tuple[float, float, Weights]]:
        """Frontier points in figure display pixels (origin bottom-left), for the test hook."""
        out = []
        for entry in self._entries:
            x, y = self.ax.transData.transform((entry.est_ms_per_token, entry.g_co2_per_1k_tokens))
            out.append((float(x), float(y), entry.weights))
        return out

    def entry_weights(self, index: int) -> Weights:
        return self._entries[index].weights

    def _picked(self, event) -> None:
        if event.artist is not self._frontier or not len(event.ind):
            return
        # Several points may sit under the cursor: take the one nearest to it.
        mouse = (event.mouseevent.x, event.mouseevent.y)
        def distance(index: int) -> float:
            entry = self._entries[index]
            x, y = self.ax.transData.transform((entry.est_ms_per_token, entry.g_co2_per_1k_tokens))
            return (x - mouse[0]) ** 2 + (y - mouse[1]) ** 2
        self._on_pick(self.entry_weights(min((int(i) for i in event.ind), key=distance)))
