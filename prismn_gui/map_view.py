"""The world map: peers coloured by carbon and sized by free VRAM, the ingress, both plans' tours.

`MapFigure` is plain matplotlib + cartopy (works on Agg, so tests and benchmarks need no display);
the app wraps its figure in a FigureCanvasTkAgg. The basemap is drawn once and kept; an update
replaces only the peer markers (when the swarm changed) and the tour/label artists, then the
caller asks for `draw_idle`. Cartopy caches projected coastlines, so redraws stay cheap.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager

import cartopy
import numpy as np

from engine.paths import ASSETS_DIR

NATURAL_EARTH_DIR = ASSETS_DIR / "natural_earth"
RESOLUTION = "110m"   # shipped: 110m and 50m; always explicit, so cartopy never picks 10m

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
        self.ax.set_anchor("N")    # spare height goes below the map, next to the colour bar
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
        # Placed relative to the drawn map (after the projection's aspect), just under it.
        cax = self.ax.inset_axes((0.2, -0.15, 0.6, 0.035))
        self.colorbar = figure.colorbar(ScalarMappable(self.norm, self.cmap), cax=cax, orientation="horizontal")
        self.colorbar.set_label("grid carbon intensity, gCO2/kWh (marker size: free VRAM)",
                                color=self.theme["text"], fontsize=8)
        self.colorbar.ax.tick_params(colors=self.theme["text"], labelsize=7)
        self._peers_key: tuple | None = None
        self._peer_ids: list[str] = []
        self._peer_rgba: np.ndarray | None = None
        self._scatter = None
        self._ingress_artist = None
        self._dynamic: list = []            # tours, stage numbers, legend
        self._animated = False              # True once a BlitManager draws the changing artists

    # ---- what changes between updates (drawn over a cached basemap when blitting) ----------

    def changing_artists(self) -> list:
        artists = [a for a in (self._scatter, self._ingress_artist) if a is not None]
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
        from matplotlib.lines import Line2D
        for artist in self._dynamic:
            artist.remove()
        self._dynamic = []
        used: set[str] = set()
        for plan, style in ((vram_plan, VRAM_STYLE), (carbon_plan, CARBON_STYLE)):
            if plan is None or not plan.feasible or ingress is None:
                continue
            used.update(s.peer_id for s in plan.stages)
            lons = [ingress.lon] + [s.lon for s in plan.stages] + [ingress.lon]
            lats = [ingress.lat] + [s.lat for s in plan.stages] + [ingress.lat]
            (line,) = self.ax.plot(lons, lats, transform=self.ccrs.Geodetic(), zorder=5,
                                   solid_capstyle="round", **{k: v for k, v in style.items() if k != "label"})
            self._dynamic.append(line)
        if carbon_plan is not None and carbon_plan.feasible:
            geo = self.ccrs.PlateCarree()._as_mpl_transform(self.ax)
            for number, stage in enumerate(carbon_plan.stages, start=1):
                # Nearby stages would stack their numbers: fan the labels out around the marker.
                angle = np.deg2rad(45 + 75 * (number - 1))
                self._dynamic.append(self.ax.annotate(
                    str(number), xy=(stage.lon, stage.lat), xycoords=geo,
                    xytext=(11 * np.cos(angle), 11 * np.sin(angle)), textcoords="offset points",
                    zorder=8, fontsize=7, fontweight="bold", color="white", ha="center", va="center",
                    bbox={"boxstyle": "circle,pad=0.25", "facecolor": CARBON_STYLE["color"],
                          "edgecolor": "white", "linewidth": 0.6}))
        self._dim_unused(used)
        handles = [
            Line2D([], [], **CARBON_STYLE),
            Line2D([], [], **VRAM_STYLE),
            Line2D([], [], marker="*", linestyle="none", markersize=12, markerfacecolor="#ffd60a",
                   markeredgecolor="#111111", label="Ingress"),
            Line2D([], [], marker="o", linestyle="none", markersize=6, markerfacecolor="#999999",
                   markeredgecolor="#111111", label="Peer in a plan"),
        ]
        legend = self.ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.005), ncol=4,
                                fontsize=7, framealpha=0.85)
        self._dynamic.append(legend)

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

    def artist_counts(self) -> dict[str, int]:
        """For tests: how many dynamic artists (tours, labels, legend) are on the map."""
        return {"dynamic": len(self._dynamic), "peers": len(self._peer_ids)}


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


def _configured() -> bool:
    return cartopy.config.get("pre_existing_data_dir") == str(NATURAL_EARTH_DIR)
