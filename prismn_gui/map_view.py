"""The world map: peers coloured by carbon and sized by free VRAM, the ingress, both plans' tours.

`MapFigure` is plain matplotlib + cartopy (works on Agg, so tests and benchmarks need no display);
the app wraps its figure in a FigureCanvasTkAgg. The basemap is drawn once and kept; an update
replaces only the peer markers (when the swarm changed) and the tour/label artists, then the
caller asks for `draw_idle`. Cartopy caches projected coastlines, so redraws stay cheap.

In live mode (peers from the coordinator) a ring around each runner shows its status, and a
deployment in flight draws the carbon tour leg by leg as its stages report ready; both touch
only their own artists, so the blit manager redraws just those.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager

import cartopy
import numpy as np

from engine.geo import great_circle_path
from engine.paths import ASSETS_DIR
from engine.status import PeerStatus, StageStatus
from prismn_gui.status_colours import status_colour

NATURAL_EARTH_DIR = ASSETS_DIR / "natural_earth"
RESOLUTION = "110m"   # shipped: 110m and 50m; always explicit, so cartopy never picks 10m

# Below the map, in pixels: a gap, then the colour bar with its ticks and label. The plans' legend
# sits inside the map, in the projection's empty lower-left corner, so the globe keeps the height.
LEGEND_PX = 4
COLORBAR_GAP_PX = 4
COLORBAR_PX = 10
BAND_PX = 52
LEGEND_MIN_MAP_PX = 170       # the legend covers too much of a smaller globe
MARGIN_PX = 4

VRAM_STYLE = {"color": "#ff7f0e", "linestyle": (0, (5, 3)), "linewidth": 1.8, "label": "VRAM baseline"}
CARBON_STYLE = {"color": "#7b2cbf", "linestyle": "-", "linewidth": 2.6, "label": "Carbon + distance"}

THEMES = {
    "light": {"figure": "#ebebeb", "text": "#1a1a1a", "ocean": "#a9d3f0", "land": "#e8e4d8",
              "coast": "#5b6770", "border": "#9aa3a8"},
    "dark": {"figure": "#2b2b2b", "text": "#e6e6e6", "ocean": "#1f4e79", "land": "#55584f",
             "coast": "#9fb3c8", "border": "#7d8288"},
}


def configure_cartopy(data_dir: str | None = None) -> None:
    """Point cartopy at the shipped Natural Earth files; downloads would land in a temp dir."""
    cartopy.config["pre_existing_data_dir"] = str(NATURAL_EARTH_DIR)
    cartopy.config["data_dir"] = data_dir or tempfile.mkdtemp(prefix="prismn-cartopy-")


class MapFigure:
    def __init__(self, figure, projection: str = "robinson", theme: str = "light") -> None:
        import cartopy.crs as ccrs
        import cartopy.feature as cfeature
        from matplotlib import colormaps
        from matplotlib.colors import Normalize

        configure_cartopy(cartopy.config.get("data_dir") if _configured() else None)
        self.ccrs = ccrs
        self.figure = figure
        self.theme = THEMES[theme]
        proj = ccrs.Robinson() if projection == "robinson" else ccrs.PlateCarree()
        figure.set_facecolor(self.theme["figure"])
        self.ax = figure.add_axes((0.005, 0.16, 0.99, 0.83), projection=proj)
        self.ax.set_global()
        self._region: tuple[float, float, float, float] | None = None
        self._aspect = self._limits_aspect()        # width / height of what is shown, projected
        self._map_h_px = float("inf")             # the globe's height on screen, set by fit()
        self.ax.set_facecolor(self.theme["ocean"])
        for category, name, style in (
            ("physical", "ocean", {"facecolor": self.theme["ocean"], "edgecolor": "none"}),
            ("physical", "land", {"facecolor": self.theme["land"], "edgecolor": "none"}),
            ("physical", "coastline", {"facecolor": "none", "edgecolor": self.theme["coast"], "linewidth": 0.4}),
            ("cultural", "admin_0_boundary_lines_land",
             {"facecolor": "none", "edgecolor": self.theme["border"], "linewidth": 0.3}),
        ):
            self.ax.add_feature(cfeature.NaturalEarthFeature(category, name, RESOLUTION), **style)
        self.cmap = colormaps["RdYlGn_r"]
        self.norm = Normalize(vmin=0, vmax=800)
        from matplotlib.cm import ScalarMappable
        cax = figure.add_axes((0.2, 0.05, 0.6, 0.03))     # placed by fit(), under the map
        self.colorbar = figure.colorbar(ScalarMappable(self.norm, self.cmap), cax=cax, orientation="horizontal")
        self.colorbar.set_label("grid carbon intensity, gCO2/kWh (marker size: free VRAM)",
                                color=self.theme["text"], fontsize=8)
        self.colorbar.ax.tick_params(colors=self.theme["text"], labelsize=7)
        self._peers_key: tuple | None = None
        self._peer_ids: list[str] = []
        self._peer_rgba: np.ndarray | None = None
        self._scatter = None
        self._ingress_artist = None
        self._dynamic: list = []            # tours, stage numbers
        self._add_plans_legend()
        self._animated = False              # True once a BlitManager draws the changing artists
        self._ingress = None
        self._carbon_plan = None
        self._carbon_line = None
        self._progress_line = None          # the ready legs of the carbon tour while deploying
        self._stage_labels: dict[str, object] = {}
        self._stage_status: dict[str, str] | None = None
        self._status_rings = None           # live mode: one ring per runner, coloured by status
        self._ring_legend = None
        self._status_key: tuple | None = None
        self.fit()
        if figure.canvas is not None:
            figure.canvas.mpl_connect("resize_event", lambda _event: self.fit())

    # ---- layout ---------------------------------------------------------------------------

    def _limits_aspect(self) -> float:
        x0, x1 = self.ax.get_xlim()
        y0, y1 = self.ax.get_ylim()
        return (x1 - x0) / (y1 - y0)

    def set_region(self, region: tuple[float, float, float, float] | None) -> bool:
        """Show (lon_min, lon_max, lat_min, lat_max), or the whole globe for None; True when the
        view changed (the caller then needs a full draw, not a blit)."""
        if region == self._region:
            return False
        self._region = region
        if region is None:
            self.ax.set_global()
        else:
            self.ax.set_extent(region, crs=self.ccrs.PlateCarree())
        self._aspect = self._limits_aspect()
        self.fit()
        return True

    def fit(self) -> None:
        """Size the globe from the canvas: as large as fits above the legend and colour bar, the
        whole block centred, so a tall canvas leaves no empty strip under the colour bar."""
        width_px, height_px = self.figure.bbox.width, self.figure.bbox.height
        if width_px < 50 or height_px < BAND_PX + 50:
            return
        map_w = min(width_px - 2 * MARGIN_PX, (height_px - BAND_PX - 2 * MARGIN_PX) * self._aspect)
        map_h = map_w / self._aspect
        left = (width_px - map_w) / 2
        bottom = (height_px - map_h - BAND_PX) / 2 + BAND_PX
        self.ax.set_position((left / width_px, bottom / height_px, map_w / width_px, map_h / height_px))
        self._map_h_px = map_h
        self._fit_legend()
        bar_w = min(0.6 * map_w, 420.0)
        bar_bottom = bottom - LEGEND_PX - COLORBAR_GAP_PX - COLORBAR_PX
        self.colorbar.ax.set_position(((width_px - bar_w) / 2 / width_px, bar_bottom / height_px,
                                       bar_w / width_px, COLORBAR_PX / height_px))

    # ---- what changes between updates (drawn over a cached basemap when blitting) ----------

    def changing_artists(self) -> list:
        artists = [a for a in (self._scatter, self._status_rings, self._ingress_artist, self._ring_legend)
                   if a is not None]
        return artists + self._dynamic

    def set_animated(self, animated: bool) -> None:
        """Animated artists are skipped by a full draw; the blit manager draws them itself."""
        self._animated = animated
        for artist in self.changing_artists():
            artist.set_animated(animated)

    @contextmanager
    def all_drawn(self):
        """For savefig: draw every artist normally, then restore blitting."""
        was = self._animated
        self.set_animated(False)
        try:
            yield
        finally:
            self.set_animated(was)

    # ---- updates --------------------------------------------------------------------------

    def show(self, peers, ingress, vram_plan, carbon_plan) -> None:
        """Show peers, ingress and both plans; only artists whose inputs changed are rebuilt."""
        self._set_peers(peers)
        self._set_ingress(ingress)
        self._set_plans(ingress, vram_plan, carbon_plan)
        self._apply_stage_status()
        if self._animated:
            self.set_animated(True)

    def _set_peers(self, peers) -> None:
        key = tuple((p.id, p.lat, p.lon, p.free_vram_gb, p.carbon_g_per_kwh) for p in peers)
        if key == self._peers_key:
            return
        self._peers_key = key
        if self._scatter is not None:
            self._scatter.remove()
            self._scatter = None
        self._peer_ids = [p.id for p in peers]
        if not peers:
            return
        lons = np.array([p.lon for p in peers])
        lats = np.array([p.lat for p in peers])
        carbon = np.array([p.carbon_g_per_kwh for p in peers])
        vram = np.array([p.free_vram_gb for p in peers])
        self._peer_rgba = self.cmap(self.norm(carbon))
        sizes = 12 + 90 * np.sqrt(np.clip(vram, 0, None) / max(float(vram.max()), 1.0))
        self._scatter = self.ax.scatter(lons, lats, s=sizes, c=self._peer_rgba, edgecolors="#333333",
                                        linewidths=0.3, transform=self.ccrs.PlateCarree(), zorder=4)

    def _set_ingress(self, ingress) -> None:
        if self._ingress_artist is not None:
            self._ingress_artist.remove()
            self._ingress_artist = None
        if ingress is None:
            return
        self._ingress_artist = self.ax.scatter([ingress.lon], [ingress.lat], marker="*", s=260,
                                               c="#ffd60a", edgecolors="#111111", linewidths=1.0,
                                               transform=self.ccrs.PlateCarree(), zorder=7)

    def _set_plans(self, ingress, vram_plan, carbon_plan) -> None:
        for artist in self._dynamic:
            artist.remove()
        self._dynamic = []
        self._ingress, self._carbon_plan, self._carbon_line = ingress, carbon_plan, None
        self._progress_line = None
        self._stage_labels = {}
        used: set[str] = set()
        for plan, style in ((vram_plan, VRAM_STYLE), (carbon_plan, CARBON_STYLE)):
            if plan is None or not plan.feasible or ingress is None:
                continue
            used.update(s.peer_id for s in plan.stages)
            lons = [ingress.lon] + [s.lon for s in plan.stages] + [ingress.lon]
            lats = [ingress.lat] + [s.lat for s in plan.stages] + [ingress.lat]
            (line,) = self.ax.plot(*self._projected_path(lats, lons), zorder=5,
                                   solid_capstyle="round", **{k: v for k, v in style.items() if k != "label"})
            self._dynamic.append(line)
            if plan is carbon_plan:
                self._carbon_line = line
        if carbon_plan is not None and carbon_plan.feasible:
            geo = self.ccrs.PlateCarree()._as_mpl_transform(self.ax)
            for number, stage in enumerate(carbon_plan.stages, start=1):
                # Nearby stages would stack their numbers: fan the labels out around the marker.
                angle = np.deg2rad(45 + 75 * (number - 1))
                self._stage_labels[stage.peer_id] = label = self.ax.annotate(
                    str(number), xy=(stage.lon, stage.lat), xycoords=geo,
                    xytext=(11 * np.cos(angle), 11 * np.sin(angle)), textcoords="offset points",
                    zorder=8, fontsize=7, fontweight="bold", color="white", ha="center", va="center",
                    bbox={"boxstyle": "circle,pad=0.25", "facecolor": CARBON_STYLE["color"],
                          "edgecolor": "white", "linewidth": 0.6})
                self._dynamic.append(label)
        self._dim_unused(used)

    def _add_plans_legend(self) -> None:
        """Once, into the cached basemap: the legend never changes, and drawing it with every update cost
        more than the tours themselves."""
        from matplotlib.lines import Line2D
        handles = [
            Line2D([], [], **CARBON_STYLE),
            Line2D([], [], **VRAM_STYLE),
            Line2D([], [], marker="*", linestyle="none", markersize=12, markerfacecolor="#ffd60a",
                   markeredgecolor="#111111", label="Ingress"),
            Line2D([], [], marker="o", linestyle="none", markersize=6, markerfacecolor="#999999",
                   markeredgecolor="#111111", label="Peer in a plan"),
        ]
        self.ax.legend(handles=handles, loc="lower left", ncol=1, fontsize=6.5, borderaxespad=0.2,
                       framealpha=0.85, facecolor=self.theme["figure"],
                       edgecolor=self.theme["border"], labelcolor=self.theme["text"])
        self._fit_legend()

    def _fit_legend(self) -> None:
        """The plans' legend sits inside the map: on a globe too small to hold it, it is hidden."""
        legend = self.ax.get_legend()
        if legend is not None:
            legend.set_visible(bool(self._map_h_px >= LEGEND_MIN_MAP_PX))

    # ---- live mode: runner statuses and a deployment in flight ------------------------------

    def show_runner_status(self, runners) -> None:
        """Rings around runners, coloured by status; `runners`: (id, lat, lon, status) rows, dead
        ones included; None or empty clears them (a file swarm)."""
        from prismn_gui.status_colours import STATUS_COLOURS
        key = tuple(runners or ())
        if key == self._status_key:
            return
        positions = tuple(r[:3] for r in key)
        if self._status_rings is not None and positions != tuple(r[:3] for r in (self._status_key or ())):
            self._status_rings.remove()
            self._status_rings = None
        self._status_key = key
        if not key:
            if self._ring_legend is not None:
                self._ring_legend.remove()
                self._ring_legend = None
            return
        if self._ring_legend is None:
            self._ring_legend = self._make_ring_legend(STATUS_COLOURS)
        colours = [STATUS_COLOURS.get(r[3], STATUS_COLOURS[PeerStatus.LIVE]) for r in key]
        if self._status_rings is None:
            self._status_rings = self.ax.scatter([r[2] for r in key], [r[1] for r in key], s=190,
                                                 facecolors="none", edgecolors=colours, linewidths=2.2,
                                                 transform=self.ccrs.PlateCarree(), zorder=6,
                                                 animated=self._animated)
        else:
            self._status_rings.set_edgecolors(colours)

    def _make_ring_legend(self, colours: dict[str, str]):
        from matplotlib.legend import Legend
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], marker="o", linestyle="none", markersize=8, markerfacecolor="none",
                          markeredgewidth=2, markeredgecolor=colour, label=status)
                   for status, colour in colours.items()]
        legend = Legend(self.ax, handles, [h.get_label() for h in handles], loc="upper left", fontsize=7,
                        title="Runners", title_fontsize=7, framealpha=0.85, facecolor=self.theme["figure"],
                        edgecolor=self.theme["border"], labelcolor=self.theme["text"])
        legend.get_title().set_color(self.theme["text"])
        legend.set_zorder(9)
        legend.set_animated(self._animated)
        self.ax.add_artist(legend)
        return legend

    def show_deploy(self, stage_status: dict[str, str] | None) -> None:
        """While deploying (`stage_status`: peer id -> pending/loading/ready/lost/failed), stage
        numbers take their status colour and the carbon tour is drawn solid up to the last stage
        that is ready with all before it; None restores the plain tour."""
        self._stage_status = dict(stage_status) if stage_status is not None else None
        self._apply_stage_status()

    def _apply_stage_status(self) -> None:
        statuses = self._stage_status
        plan, line = self._carbon_plan, self._carbon_line
        for peer_id, label in self._stage_labels.items():
            status = statuses.get(peer_id) if statuses is not None else None
            label.get_bbox_patch().set_facecolor(CARBON_STYLE["color"] if status is None else status_colour(status))
        if line is None or plan is None or self._ingress is None:
            return
        if self._progress_line is not None:
            self._progress_line.remove()
            self._dynamic.remove(self._progress_line)
            self._progress_line = None
        if statuses is None or not any(s.peer_id in statuses for s in plan.stages):
            line.set_alpha(None)
            return
        ready = 0
        while ready < len(plan.stages) and statuses.get(plan.stages[ready].peer_id) == StageStatus.READY:
            ready += 1
        line.set_alpha(0.25)
        if ready == 0:
            return
        stops = [(self._ingress.lon, self._ingress.lat)] + [(s.lon, s.lat) for s in plan.stages[:ready]]
        if ready == len(plan.stages):
            stops.append((self._ingress.lon, self._ingress.lat))
        self._progress_legs = len(stops) - 1          # the line itself holds many points per leg
        (self._progress_line,) = self.ax.plot(*self._projected_path([p[1] for p in stops], [p[0] for p in stops]),
                                              zorder=5, solid_capstyle="round",
                                              animated=self._animated,
                                              **{k: v for k, v in CARBON_STYLE.items() if k != "label"})
        self._dynamic.insert(0, self._progress_line)

    def _projected_path(self, lats, lons) -> tuple[np.ndarray, np.ndarray]:
        """Great-circle legs through the stops in the map's own coordinates, broken where they cross
        the date line. Computed in bulk here: cartopy's Geodetic transform resamples each line with
        thousands of single-point geodesic calls (about 0.2 s per plan update)."""
        path_lats, path_lons = great_circle_path(lats, lons)
        xy = self.ax.projection.transform_points(self.ccrs.PlateCarree(), path_lons, path_lats)
        x, y = xy[:, 0].copy(), xy[:, 1].copy()
        wraps = np.flatnonzero(np.abs(np.diff(path_lons)) > 180.0) + 1
        return np.insert(x, wraps, np.nan), np.insert(y, wraps, np.nan)

    def _dim_unused(self, used: set[str]) -> None:
        if self._scatter is None or self._peer_rgba is None:
            return
        rgba = self._peer_rgba.copy()
        mask = np.array([pid in used for pid in self._peer_ids], dtype=bool)
        rgba[:, 3] = np.where(mask, 1.0, 0.28)
        edges = np.zeros_like(rgba)
        edges[:, 3] = np.where(mask, 1.0, 0.15)
        widths = np.where(mask, 1.1, 0.3)
        self._scatter.set_facecolors(rgba)
        self._scatter.set_edgecolors(edges)
        self._scatter.set_linewidths(widths)

    def fade_peers(self, peer_ids: frozenset[str]) -> None:
        """Nearly hide peers a placement constraint rules out (after `show`, which re-dims)."""
        if self._scatter is None or not peer_ids:
            return
        out = np.array([pid in peer_ids for pid in self._peer_ids], dtype=bool)
        faces = self._scatter.get_facecolors().copy()
        faces[out] = (0.55, 0.55, 0.55, 0.12)
        self._scatter.set_facecolors(faces)
        edges = self._scatter.get_edgecolors().copy()
        if len(edges) == len(out):
            edges[out, 3] = 0.1
            self._scatter.set_edgecolors(edges)

    def artist_counts(self) -> dict[str, int]:
        """For tests: how many dynamic artists (tours, labels, legend), rings and ready legs are on the map."""
        return {"dynamic": len(self._dynamic), "peers": len(self._peer_ids),
                "status_rings": len(self._status_key or ()),
                "ring_statuses": {r[0]: r[3] for r in self._status_key or ()},
                "ready_legs": 0 if self._progress_line is None else self._progress_legs}


class BlitManager:
    """Keeps a rendered basemap and redraws only the changing artists over it (matplotlib blitting).

    A full draw (first show, resize, tab switch) refreshes the cached background; an update then
    costs restore + a few artists + one blit instead of re-rendering coastlines and countries.
    """

    def __init__(self, canvas, map_figure: MapFigure, on_drawn=None) -> None:
        self.canvas = canvas
        self.map_figure = map_figure
        self._on_drawn = on_drawn
        self._background = None
        map_figure.set_animated(True)
        canvas.mpl_connect("draw_event", self._full_draw)

    def _full_draw(self, _event) -> None:
        self._background = self.canvas.copy_from_bbox(self.canvas.figure.bbox)
        self._draw_changing()
        if self._on_drawn:
            self._on_drawn()

    def _draw_changing(self) -> None:
        for artist in self.map_figure.changing_artists():
            self.canvas.figure.draw_artist(artist)

    def update(self) -> None:
        if self._background is None:
            self.canvas.draw_idle()
            return
        self.canvas.restore_region(self._background)
        self._draw_changing()
        self.canvas.blit(self.canvas.figure.bbox)
        if self._on_drawn:
            self._on_drawn()


def region_around(points: list[tuple[float, float]], min_span_deg: float = 24.0) -> tuple[float, float, float, float]:
    """A lon/lat box around (lat, lon) points, padded, at least `min_span_deg` high and about twice
    as wide as high (the globe's own shape, so the canvas stays filled)."""
    lats = [p[0] for p in points]
    lons = [p[1] for p in points]
    centre_lat, centre_lon = (min(lats) + max(lats)) / 2, (min(lons) + max(lons)) / 2
    half_h = max((max(lats) - min(lats)) * 0.65, (max(lons) - min(lons)) * 0.65 / 2, min_span_deg / 2)
    half_w = 2 * half_h
    if half_w >= 180 or half_h >= 90:
        return (-180.0, 180.0, -90.0, 90.0)
    lat_min, lat_max = max(centre_lat - half_h, -89.0), min(centre_lat + half_h, 89.0)
    lon_min, lon_max = max(centre_lon - half_w, -180.0), min(centre_lon + half_w, 180.0)
    return (lon_min, lon_max, lat_min, lat_max)


def _configured() -> bool:
    return cartopy.config.get("pre_existing_data_dir") == str(NATURAL_EARTH_DIR)
