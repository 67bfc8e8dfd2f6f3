"""The map's peer hover: each peer's carbon signal (value, kind, source, age) from real resolved signals."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.carbon import CarbonResolver
from engine.swarm import parse_swarm
from prismn_gui.map_hover import peer_tooltip
from tests.engine.carbon.fake_grids import start_fake_grids

SWARM = {"ingress": {"name": "Frankfurt", "lat": 50.11, "lon": 8.68}, "peers": [
    {"id": "frankfurt-4090", "lat": 50.11, "lon": 8.68, "free_vram_gb": 22.0, "gpu": "RTX 4090"},
    {"id": "rooftop-solar", "lat": 48.14, "lon": 11.58, "free_vram_gb": 10.0, "carbon_g_per_kwh": 20},
]}


@pytest.fixture
def grids(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    server = start_fake_grids()
    server.set_zone("DE", 50.11, 8.68, 420)
    yield server
    server.stop()


def live_swarm(grids):
    resolver = CarbonResolver(token=grids.token, api_url=grids.url + "/em", use_env=False)
    return parse_swarm(SWARM, resolver=resolver)


def test_a_live_peer_shows_its_value_kind_source_zone_and_age(grids):
    swarm = live_swarm(grids)
    frankfurt, solar = (peer_tooltip(p, s, now=grids.now + timedelta(minutes=12))
                        for p, s in zip(swarm.peers, swarm.signals, strict=True))
    assert frankfurt.startswith("frankfurt-4090\nGPU: RTX 4090\nfree VRAM: 22.0 GB\n")
    assert frankfurt.endswith("carbon: 420 gCO2/kWh average from electricitymaps, DE; 12 min")
    assert solar.endswith("carbon: 20 gCO2/kWh average from explicit, stated by the peer")   # a stated value has no age


def test_offline_the_hover_says_yearly_average_and_offline():
    swarm = parse_swarm(SWARM, resolver=CarbonResolver(use_env=False))
    text = peer_tooltip(swarm.peers[0], swarm.signals[0])
    assert "average from country (offline)" in text and text.endswith("; yearly")
    # without a signal (a live runner's row) the tooltip keeps the peer's own figure and source
    assert peer_tooltip(swarm.peers[0]).endswith(f"{swarm.peers[0].carbon_g_per_kwh:.0f} gCO2/kWh (country)")


@pytest.mark.gui
def test_moving_the_mouse_onto_a_peer_shows_its_signal_over_the_real_map(grids, display, monkeypatch):
    monkeypatch.setenv("DISPLAY", display)      # the in-process Tk below opens it
    import tkinter as tk

    from matplotlib.backend_bases import MouseEvent
    from matplotlib.backends.backend_tkagg import FigureCanvasTkAgg
    from matplotlib.figure import Figure

    from prismn_gui.map_hover import MapHover
    from prismn_gui.map_view import MapFigure

    swarm = live_swarm(grids)
    signals = dict(zip((p.id for p in swarm.peers), swarm.signals, strict=True))
    root = tk.Tk()
    try:
        figure = Figure(figsize=(6, 4), dpi=100)
        canvas = FigureCanvasTkAgg(figure, master=root)
        canvas.get_tk_widget().pack(fill="both", expand=True)
        view = MapFigure(figure, projection="platecarree")
        view.show(swarm.peers, swarm.ingress, None, None)
        canvas.draw()
        hover = MapHover(canvas, view, lambda: swarm.peers, lambda: signals)
        peer = swarm.peers[0]
        x, y = view.ax.transData.transform(
            view.ax.projection.transform_point(peer.lon, peer.lat, view.ccrs.PlateCarree()))
        MouseEvent("motion_notify_event", canvas, x, y)._process()
        assert hover.shown is not None and hover.shown.startswith(peer.id)
        assert "average from electricitymaps, DE" in hover.shown
        assert hover.label.cget("text") == hover.shown
        MouseEvent("motion_notify_event", canvas, 2, 2)._process()         # off every peer: hidden
        assert hover.shown is None
    finally:
        root.destroy()
