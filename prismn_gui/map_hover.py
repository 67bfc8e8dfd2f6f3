"""A tooltip for the peer under the mouse on the map (zoom / pan: prismn_gui.map_toolbar).

The tooltip is a Tk label placed over the canvas, not a matplotlib artist: showing it never redraws
the map. It names the peer's id, GPU, free VRAM and grid carbon intensity; where the plan resolved a
carbon signal for the peer, its kind (average / marginal), source and age (prismn_gui.carbon_signals).
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from engine.carbon_values import CarbonSignal
from prismn_gui.carbon_signals import signal_hover

HOVER_PX = 9.0


def peer_tooltip(peer: Any, signal: CarbonSignal | None = None, now: datetime | None = None) -> str:
    """The hover text; with the peer's resolved `signal`, its carbon line says kind, source and age."""
    head = f"{peer.id}\nGPU: {peer.gpu or 'unknown'}\nfree VRAM: {peer.free_vram_gb:.1f} GB\n"
    if signal is not None:
        return head + f"carbon: {signal_hover(signal, now)}"
    source = getattr(peer.carbon_source, "value", peer.carbon_source)
    return head + f"carbon: {peer.carbon_g_per_kwh:.0f} gCO2/kWh ({source})"


def nearest(points_px: np.ndarray, x: float, y: float, radius_px: float = HOVER_PX) -> int | None:
    """Index of the point closest to (x, y) within `radius_px` display pixels, else None."""
    if len(points_px) == 0:
        return None
    distances = np.hypot(points_px[:, 0] - x, points_px[:, 1] - y)
    index = int(np.argmin(distances))
    return index if distances[index] <= radius_px else None


class MapHover:
    def __init__(self, canvas: Any, map_figure: Any, peers: Callable[[], Sequence[Any]],
                 signals: Callable[[], Mapping[str, CarbonSignal]] = dict) -> None:
        """`peers`: the peers on the map now; `signals`: their carbon signals by peer id (may be empty)."""
        self.canvas = canvas
        self.map = map_figure
        self.peers = peers
        self.signals = signals
        widget = canvas.get_tk_widget()
        self.label = tk.Label(widget, justify="left", bg="#fffbe6", fg="#1a1a1a", relief="solid", borderwidth=1,
                              font=("TkDefaultFont", 9))
        self.shown: str | None = None
        canvas.mpl_connect("motion_notify_event", self._moved)

    def _moved(self, event: Any) -> None:
        peers = list(self.peers())
        if event.inaxes is not self.map.ax or not peers:
            self._hide()
            return
        lons = np.array([p.lon for p in peers], dtype=float)
        lats = np.array([p.lat for p in peers], dtype=float)
        projected = self.map.ax.projection.transform_points(self.map.ccrs.PlateCarree(), lons, lats)[:, :2]
        index = nearest(self.map.ax.transData.transform(projected), event.x, event.y)
        if index is None:
            self._hide()
            return
        peer = peers[index]
        text = peer_tooltip(peer, self.signals().get(peer.id))
        gui = event.guiEvent
        x, y = (gui.x, gui.y) if gui is not None and hasattr(gui, "x") else (event.x, event.y)
        self.label.configure(text=text)
        self.label.place(x=x + 14, y=max(0, y - 10))
        self.label.lift()
        self.shown = text

    def _hide(self) -> None:
        if self.shown is not None:
            self.label.place_forget()
            self.shown = None
