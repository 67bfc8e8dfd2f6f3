"""The map and Pareto figures on Agg: offline basemap, both tours, dimming, picking."""

from __future__ import annotations

import cartopy.io
import numpy as np
import pytest
from matplotlib.backend_bases import MouseEvent
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from engine.plan import Plan
from prismn_gui import export
from prismn_gui.map_view import CARBON_STYLE, VRAM_STYLE, MapFigure
from prismn_gui.pareto_view import ParetoFigure
from prismn_gui.viewmodel import PlanningSession, PlanRequest


@pytest.fixture(scope="module")
def outcome():
    return PlanningSession().compute(PlanRequest(model="llama-3.1-70b", quant="int8"))


@pytest.fixture
def no_downloads(monkeypatch):
    def refuse(self, *args, **kwargs):
        raise AssertionError(f"cartopy tried to download {self.url_template}")
    monkeypatch.setattr(cartopy.io.Downloader, "acquire_resource", refuse)


def new_figure():
    figure = Figure(figsize=(7, 4.2), dpi=100)
    FigureCanvasAgg(figure)
    return figure


@pytest.mark.parametrize("projection", ["robinson", "platecarree"])
def test_the_basemap_draws_from_shipped_files_without_downloading(no_downloads, outcome, projection):
    figure = new_figure()
    view = MapFigure(figure, projection=projection)
    view.show(outcome.peers, outcome.ingress, outcome.vram_plan, outcome.carbon_plan)
    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3].astype(int)
    ocean = np.all(np.abs(pixels - (0xa9, 0xd3, 0xf0)) < 12, axis=-1).mean()
    land = np.all(np.abs(pixels - (0xe8, 0xe4, 0xd8)) < 12, axis=-1).mean()
    assert ocean > 0.15 and land > 0.05


def test_both_tours_are_drawn_in_distinct_styles_with_stage_numbers(outcome):
    figure = new_figure()
    view = MapFigure(figure)
    view.show(outcome.peers, outcome.ingress, outcome.vram_plan, outcome.carbon_plan)
    lines = [line for line in view.ax.get_lines()]
    colours = {line.get_color() for line in lines}
    assert {CARBON_STYLE["color"], VRAM_STYLE["color"]} <= colours
    numbers = sorted(t.get_text() for t in view.ax.texts)
    assert numbers == sorted(str(i) for i in range(1, len(outcome.carbon_plan.stages) + 1))
    legend_labels = [t.get_text() for t in view.ax.get_legend().get_texts()]
    assert "Carbon + distance" in legend_labels and "VRAM baseline" in legend_labels


def test_unselected_peers_are_dimmed(outcome):
    figure = new_figure()
    view = MapFigure(figure)
    view.show(outcome.peers, outcome.ingress, outcome.vram_plan, outcome.carbon_plan)
    used = {s.peer_id for p in (outcome.vram_plan, outcome.carbon_plan) for s in p.stages}
    alphas = view._scatter.get_facecolors()[:, 3]
    for peer, alpha in zip(outcome.peers, alphas, strict=True):
        assert (alpha == 1.0) == (peer.id in used)


def test_an_update_replaces_tours_instead_of_piling_them_up(outcome):
    figure = new_figure()
    view = MapFigure(figure)
    for _ in range(3):
        view.show(outcome.peers, outcome.ingress, outcome.vram_plan, outcome.carbon_plan)
    assert len(view.ax.get_lines()) == 2
    scatter = view._scatter
    view.show(outcome.peers, outcome.ingress, outcome.vram_plan, outcome.carbon_plan)
    assert view._scatter is scatter          # same swarm: peer markers kept


def test_exports_write_the_engine_schema_and_a_png(outcome, tmp_path):
    path = export.write_plan_json(outcome.carbon_plan, tmp_path / "plan.json")
    import json
    assert Plan.from_dict(json.loads(path.read_text())) == outcome.carbon_plan
    figure = new_figure()
    MapFigure(figure).show(outcome.peers, outcome.ingress, outcome.vram_plan, outcome.carbon_plan)
    png = export.write_figure_png(figure, tmp_path / "map.png", dpi=60)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_clicking_a_pareto_point_hands_back_its_weights():
    session = PlanningSession()
    sweep = session.pareto(PlanRequest())
    picked = []
    figure = new_figure()
    view = ParetoFigure(figure, on_pick=picked.append)
    view.show_sweep(sweep)
    view.show_current(sweep.entries[0].est_ms_per_token, sweep.entries[0].g_co2_per_1k_tokens)
    figure.canvas.draw()
    index = len(sweep.entries) - 1
    entry = sweep.entries[index]
    x, y = view.ax.transData.transform((entry.est_ms_per_token, entry.g_co2_per_1k_tokens))
    click = MouseEvent("button_press_event", figure.canvas, x, y, button=1)
    figure.canvas.callbacks.process("button_press_event", click)
    assert len(picked) == 1
    chosen = next(e for e in sweep.entries if e.weights == picked[0])
    # Points can coincide; the one handed back is the one under the cursor.
    assert (chosen.est_ms_per_token, chosen.g_co2_per_1k_tokens) == (entry.est_ms_per_token,
                                                                    entry.g_co2_per_1k_tokens)


def _share_of(figure, hex_colour: str, tolerance: int = 10) -> float:
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3].astype(int)
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    return float(np.all(np.abs(pixels - rgb) < tolerance, axis=-1).mean())


def test_blitting_draws_the_tours_over_the_cached_basemap_and_exports_keep_them(outcome, tmp_path):
    import matplotlib.image

    from prismn_gui.map_view import BlitManager

    figure = new_figure()
    view = MapFigure(figure)
    drawn = []
    blit = BlitManager(figure.canvas, view, on_drawn=lambda: drawn.append(1))
    view.show(outcome.peers, outcome.ingress, outcome.vram_plan, outcome.carbon_plan)
    figure.canvas.draw()                       # full draw: caches the basemap, then the tours
    with_tours = _share_of(figure, VRAM_STYLE["color"])
    view.show(outcome.peers, outcome.ingress, None, None)
    blit.update()                              # restore basemap; only the legend's sample line is orange
    without_tours = _share_of(figure, VRAM_STYLE["color"])
    assert with_tours > 3 * without_tours
    view.show(outcome.peers, outcome.ingress, outcome.vram_plan, outcome.carbon_plan)
    blit.update()
    assert _share_of(figure, VRAM_STYLE["color"]) == with_tours
    assert len(drawn) == 3
    with view.all_drawn():
        png = export.write_figure_png(figure, tmp_path / "map.png", dpi=100)
    saved = (matplotlib.image.imread(png)[..., :3] * 255).astype(int)
    rgb = np.array([int(VRAM_STYLE["color"][i:i + 2], 16) for i in (1, 3, 5)])
    assert np.all(np.abs(saved - rgb) < 10, axis=-1).any()


def test_a_deployment_draws_the_carbon_tour_leg_by_leg_and_colours_the_stage_numbers(outcome):
    from prismn_gui.status_colours import STATUS_COLOURS, status_colour

    view = MapFigure(new_figure())
    view.show(outcome.peers, outcome.ingress, outcome.vram_plan, outcome.carbon_plan)
    stages = [s.peer_id for s in outcome.carbon_plan.stages]
    assert len(stages) >= 2
    view.show_deploy({peer_id: "loading" for peer_id in stages})
    assert view.artist_counts()["ready_legs"] == 0
    view.show_deploy({stages[0]: "ready", **{p: "loading" for p in stages[1:]}})
    assert view.artist_counts()["ready_legs"] == 1                  # ingress -> first stage
    colour = view._stage_labels[stages[0]].get_bbox_patch().get_facecolor()
    assert np.allclose(colour[:3], np.array([int(STATUS_COLOURS["ready"][i:i + 2], 16) for i in (1, 3, 5)]) / 255)
    view.show_deploy({peer_id: "ready" for peer_id in stages})
    assert view.artist_counts()["ready_legs"] == len(stages) + 1    # and back to the ingress
    # A new plan shown keeps the deployment's colours (same stages), None restores the plain tour.
    view.show(outcome.peers, outcome.ingress, outcome.vram_plan, outcome.carbon_plan)
    assert view.artist_counts()["ready_legs"] == len(stages) + 1
    view.show_deploy(None)
    assert view.artist_counts()["ready_legs"] == 0
    assert status_colour("lost") == STATUS_COLOURS["dead"]


def test_runner_rings_follow_statuses_and_clear_outside_live_mode(outcome):
    view = MapFigure(new_figure())
    view.show(outcome.peers, outcome.ingress, outcome.vram_plan, outcome.carbon_plan)
    rows = [("a", 48.86, 2.35, "live"), ("b", 50.11, 8.68, "ready"), ("c", 52.37, 4.9, "dead")]
    view.show_runner_status(rows)
    rings = view._status_rings
    assert view.artist_counts()["status_rings"] == 3 and rings in view.changing_artists()
    view.show_runner_status([(*r[:3], "ready") for r in rows])
    assert view._status_rings is rings                 # same places: only the colours change
    assert view._ring_legend in view.changing_artists()
    view.show_runner_status(None)
    assert view._status_rings is None and view.artist_counts()["status_rings"] == 0
    assert view._ring_legend is None


def test_the_map_is_sized_from_the_canvas_and_centred_with_room_for_legend_and_colour_bar():
    from prismn_gui.map_view import BAND_PX, region_around

    figure = Figure(figsize=(5.4, 4.2), dpi=100)     # taller than the globe's shape
    FigureCanvasAgg(figure)
    view = MapFigure(figure)
    figure.canvas.draw()
    box = view.ax.get_window_extent().frozen()
    bar = view.colorbar.ax.get_window_extent().frozen()
    assert box.width > 0.97 * 540                               # the globe fills the width
    assert bar.y1 < box.y0                                      # the colour bar under the map
    spare_top, spare_bottom = 420 - box.y1, bar.y0
    assert abs(spare_top - (spare_bottom - (BAND_PX - (box.y0 - bar.y0)))) < 8   # centred block
    region = region_around([(48.86, 2.35), (50.11, 8.68)])
    assert region[0] < 2.35 and region[1] > 8.68 and region[2] < 48.86 and region[3] > 50.11
    assert view.set_region(region) and not view.set_region(region)
    figure.canvas.draw()
    assert view.ax.get_window_extent().height > box.height      # a zoomed view uses the height


def test_the_panel_refuses_a_plan_that_is_infeasible_or_not_on_live_runners(outcome, tiny_swarm):
    from prismn_gui.runners_panel import _undeployable

    plan = outcome.carbon_plan
    ids = {s.peer_id for s in plan.stages}
    assert _undeployable(plan, ids) is None
    assert "not live runners" in _undeployable(plan, ids - {plan.stages[0].peer_id})
    infeasible = PlanningSession(str(tiny_swarm)).compute(PlanRequest(model="llama-3.1-70b")).carbon_plan
    assert not infeasible.feasible and "infeasible" in _undeployable(infeasible, ids)


@pytest.mark.parametrize(("height_in", "shown"), [(4.2, True), (1.9, False)])
def test_the_plans_legend_sits_inside_the_map_and_is_hidden_on_a_globe_too_small_for_it(outcome, height_in, shown):
    figure = Figure(figsize=(5.4, height_in), dpi=100)
    FigureCanvasAgg(figure)
    view = MapFigure(figure)
    view.show(outcome.peers, outcome.ingress, outcome.vram_plan, outcome.carbon_plan)
    figure.canvas.draw()
    legend = view.ax.get_legend()
    assert legend.get_visible() is shown
    if shown:
        box, globe = legend.get_window_extent(), view.ax.get_window_extent()
        assert globe.x0 <= box.x0 and box.y0 >= globe.y0 - 1 and box.y1 <= globe.y1   # inside, not below
