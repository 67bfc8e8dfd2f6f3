"""The Prismn window: controls | map & Pareto tabs + deploy area | plan comparison.

Planning runs on worker threads (prismn_gui.worker); this module only wires widgets, polls the
result queue with `after`, applies outcomes and redraws with `draw_idle`. Observers (`observers`) hear
what changed; with `--state-file` / PRISMN_STATE_FILE, `main` attaches prismn_gui.state_file, which
writes the window's state as JSON for tests and benchmarks.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from tkinter import filedialog

import customtkinter as ctk
import matplotlib

matplotlib.use("TkAgg")
from matplotlib.backends.backend_tkagg import FigureCanvasTkAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from engine.planning.types import Weights  # noqa: E402
from engine.status import PeerStatus, StageStatus  # noqa: E402
from prismn_gui import export, state_file  # noqa: E402
from prismn_gui.carbon_time_view import CarbonTimeTab  # noqa: E402
from prismn_gui.comparison import ComparisonPanel  # noqa: E402
from prismn_gui.controls import Controls  # noqa: E402
from prismn_gui.deploy_area import AppContext, build_deploy_area  # noqa: E402
from prismn_gui.map_hover import MapHover  # noqa: E402
from prismn_gui.map_toolbar import add_map_toolbar  # noqa: E402
from prismn_gui.map_view import BlitManager, MapFigure, configure_cartopy, region_around  # noqa: E402
from prismn_gui.pareto_view import ParetoFigure  # noqa: E402
from prismn_gui.targets import disallowed_ids  # noqa: E402
from prismn_gui.targets_panel import TargetsPanel  # noqa: E402
from prismn_gui.viewmodel import DEFAULT_WEIGHTS, PlanningSession, PlanOutcome  # noqa: E402
from prismn_gui.window_size import initial_size, minimum_size  # noqa: E402
from prismn_gui.worker import PlanWorker  # noqa: E402

TITLE = "Prismn"
POLL_MS = 15
LIVE_POLL_MS = 300       # how often the live peer set and statuses are read from the coordinator
DEFAULT_MODEL = "llama-3.1-70b"     # needs several peers of the demo swarm: the first screen shows a tour


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="main.py", description="Prismn desktop app")
    parser.add_argument("--swarm", default="", help="peers JSON file (default: the demo swarm)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="preset name or config.json path")
    parser.add_argument("--projection", choices=("robinson", "platecarree"), default="robinson")
    parser.add_argument("--appearance", choices=("system", "light", "dark"), default="system")
    parser.add_argument("--state-file", default=os.environ.get("PRISMN_STATE_FILE", ""),
                        help="write a JSON state after each update (also env PRISMN_STATE_FILE)")
    return parser.parse_args(argv)


def _resolved_appearance(choice: str) -> str:
    """"system" read once at start: left as "system", customtkinter asks the desktop again every few
    tens of milliseconds, which on Linux (darkdetect) starts a `gsettings` process each time and cost
    every slider update ~0.1 s. A theme switched while the app runs shows after a restart."""
    if choice != "system":
        return choice
    try:
        import darkdetect

        return "dark" if darkdetect.isDark() else "light"
    except Exception:       # no desktop to ask (Xvfb, a bare X server): customtkinter's default
        return "light"


class PrismnApp:
    def __init__(self, args: argparse.Namespace) -> None:
        self.started = time.perf_counter()
        self.args = args
        self.observers: list[Callable[[str], None]] = []     # told what changed (prismn_gui.state_file)
        ctk.set_appearance_mode(_resolved_appearance(args.appearance))
        theme = "dark" if ctk.get_appearance_mode() == "Dark" else "light"
        configure_cartopy()

        self.root = ctk.CTk()
        self.root.title(TITLE)
        width, height = initial_size(self.root.winfo_screenwidth(), self.root.winfo_screenheight())
        self.root.geometry(f"{width}x{height}")
        self.root.minsize(*minimum_size(self.root.winfo_screenwidth(), self.root.winfo_screenheight()))
        self.root.grid_columnconfigure(1, weight=1)
        self.root.grid_rowconfigure(0, weight=1)

        from engine.model import list_presets
        presets = list_presets()
        model = args.model if args.model in presets or Path(args.model).exists() else DEFAULT_MODEL
        # The controls scroll when the window is shorter than they are (a 1366x768 laptop).
        left = ctk.CTkScrollableFrame(self.root, width=236, fg_color="transparent")
        left.grid(row=0, column=0, sticky="nsw", padx=(6, 3), pady=6)
        self.controls = Controls(left, presets=presets, default_model=model,
                                 initial_weights=DEFAULT_WEIGHTS, on_change=self.request_plan,
                                 initial_swarm_path=args.swarm)
        self.controls.pack(fill="both", expand=True)

        centre = ctk.CTkFrame(self.root, fg_color="transparent")
        centre.grid(row=0, column=1, sticky="nsew", padx=3, pady=6)
        centre.grid_columnconfigure(0, weight=1)
        centre.grid_rowconfigure(1, weight=1)
        centre.grid_rowconfigure(2, minsize=190)   # runners / deploy area
        self.targets_panel = TargetsPanel(centre, on_change=self.request_plan)
        self.targets_panel.grid(row=0, column=0, sticky="ew", pady=(0, 4))
        self.tabs = ctk.CTkTabview(centre, command=self._tab_changed)
        self.tabs.grid(row=1, column=0, sticky="nsew")
        map_tab, pareto_tab = self.tabs.add("Map"), self.tabs.add("Pareto")
        self.carbon_time = CarbonTimeTab(self.tabs.add("Carbon 24 h"), self.root, theme,
                                         on_updated=lambda: self._changed("carbon_time"),
                                         coordinator=lambda: getattr(self, "coordinator", None))

        self.map_figure = Figure(figsize=(6.2, 4.0), dpi=100)
        self.map_canvas = FigureCanvasTkAgg(self.map_figure, master=map_tab)
        self.map = MapFigure(self.map_figure, projection=args.projection, theme=theme)
        self.map_toolbar = add_map_toolbar(self.map_canvas, centre, over=self.tabs)   # zoom / pan
        self.map_canvas.get_tk_widget().pack(fill="both", expand=True)
        self.map_hover = MapHover(self.map_canvas, self.map, lambda: self.outcome.peers if self.outcome else (),
                                  lambda: self.outcome.signals if self.outcome else {})
        self.map_draws = 0
        self.map_blit = BlitManager(self.map_canvas, self.map, on_drawn=self._map_drawn)

        self.pareto_figure = Figure(figsize=(6.2, 4.0), dpi=100)
        self.pareto_canvas = FigureCanvasTkAgg(self.pareto_figure, master=pareto_tab)
        self.pareto = ParetoFigure(self.pareto_figure, on_pick=self.use_weights, theme=theme)
        self.pareto_canvas.get_tk_widget().pack(fill="both", expand=True)
        self.pareto_canvas.mpl_connect("draw_event", lambda _e: self._changed("pareto"))

        self.outcome: PlanOutcome | None = None
        self.context = AppContext(
            root=self.root,
            current_plan=lambda: self.outcome.carbon_plan if self.outcome else None,
            baseline_plan=lambda: self.outcome.vram_plan if self.outcome else None,
            set_status=self._set_status,
        )
        self.deploy_area = build_deploy_area(centre, self.context)
        self.deploy_area.grid(row=2, column=0, sticky="nsew", pady=(6, 0))
        self.coordinator = None
        self._live_rows: tuple = ()
        self._deployed_stages: tuple[str, ...] = ()
        self._stage_status: dict[str, str] = {}
        self.context.on_panel("coordinator", self._coordinator_changed)
        self.context.on_panel("local_runners", self._local_runners_started)
        self.context.on_panel("deploy_started", self._deploy_started)
        self.context.on_panel("stage", self._stage_progress)

        self.comparison = ComparisonPanel(self.root, on_export_plan=self.export_plan,
                                          on_export_map=self.export_map)
        self.comparison.grid(row=0, column=2, sticky="nse", padx=(3, 6), pady=6)
        self.context.on_panel("generated", self.comparison.show_measured)
        self.context.on_panel("generated", lambda *_: self.request_plan())    # estimates from fresh measurements

        self.status = ctk.CTkLabel(self.root, text="", anchor="w", font=ctk.CTkFont(size=11))
        self.status.grid(row=1, column=0, columnspan=3, sticky="ew", padx=10)

        default_swarm = args.swarm or None
        self.plan_worker = PlanWorker(PlanningSession(default_swarm))
        self.pareto_worker = PlanWorker(PlanningSession(default_swarm))
        self._request_id = 0
        self._pareto_key: tuple | None = None
        self.update_number = 0
        self.applied_at: float | None = None
        self.map_draws_at_apply = 0
        self.last_apply_ms = 0.0
        self._closing = False
        self.root.protocol("WM_DELETE_WINDOW", self.close)
        # A terminated app still closes properly: the panel stops the coordinator and its runners.
        signal.signal(signal.SIGTERM, lambda *_: self.root.after(0, self.close))
        self.root.after(POLL_MS, self._poll)
        self.root.after(LIVE_POLL_MS, self._live_tick)
        self.request_plan()

    # ---- requests and results ----------------------------------------------------------------

    def request_plan(self) -> None:
        self._request_id += 1
        self.plan_worker.submit_plan(replace(self.controls.request(self._request_id),
                                             targets=self.targets_panel.request()))

    def use_weights(self, weights: Weights) -> None:
        self.controls.set_weights(weights, notify=True)

    def _poll(self) -> None:
        latest = {}
        for worker in (self.plan_worker, self.pareto_worker):
            while not worker.results.empty():
                kind, request, result = worker.results.get_nowait()
                latest[kind] = (request, result)   # only the newest of each kind matters
        if "plan" in latest:
            self._apply_plan(*latest["plan"])
        if "pareto" in latest:
            self._apply_pareto(*latest["pareto"])
        self.root.after(POLL_MS, self._poll)

    def _apply_plan(self, request, result) -> None:
        if isinstance(result, Exception):
            result = PlanOutcome(request, error=f"internal error: {result!r} (see terminal)")
        outcome: PlanOutcome = result
        apply_started = time.perf_counter()
        self.map_draws_at_apply = self.map_draws
        self.outcome = outcome
        self.comparison.show(outcome)
        self.targets_panel.show(outcome)
        self.carbon_time.show(outcome)
        if outcome.error is None:
            carbon_stages = tuple(s.peer_id for s in outcome.carbon_plan.stages) if outcome.carbon_plan else ()
            # A deployment's colours belong to its own plan, not to another one shown later.
            self.map.show_deploy(self._stage_status if carbon_stages == self._deployed_stages else None)
            self.map.show(outcome.peers, outcome.ingress, outcome.vram_plan, outcome.carbon_plan)
            self.map.fade_peers(disallowed_ids(outcome.peers, outcome.request.targets))
            self.map.show_runner_status(self._live_rows if outcome.request.live else None)
            if self.map.set_region(self._live_region(outcome)):
                self.map_canvas.draw_idle()      # a new view: the cached basemap is stale
            else:
                self.map_blit.update()
            key = request.planning_key()
            if key != self._pareto_key:
                self._pareto_key = key
                self.pareto_worker.submit_pareto(request)
            metrics = outcome.carbon_plan.metrics if outcome.carbon_plan else None
            self.pareto.show_current(metrics.est_ms_per_token if metrics else None,
                                     metrics.g_co2_per_1k_tokens if metrics else None)
            self._draw_pareto_if_shown()
        self.update_number += 1
        self.applied_at = time.perf_counter()
        self.last_apply_ms = (self.applied_at - apply_started) * 1000
        self.context.publish(outcome)
        self._changed("plan")

    def _apply_pareto(self, request, result) -> None:
        if isinstance(result, Exception) or request.planning_key() != self._pareto_key:
            return
        self.pareto.show_sweep(result)
        self._draw_pareto_if_shown()

    def _draw_pareto_if_shown(self) -> None:
        # A hidden Pareto figure is redrawn when its tab is opened, not on every slider move.
        if self.tabs.get() == "Pareto":
            self.pareto_canvas.draw_idle()

    def _tab_changed(self) -> None:
        self.map_toolbar.show_over(self.tabs, visible=self.tabs.get() == "Map")
        if self.tabs.get() == "Pareto":
            self.pareto_canvas.draw_idle()
        elif self.tabs.get() == "Carbon 24 h":
            self.carbon_time.render()
        else:
            self.map_canvas.draw_idle()

    def _map_drawn(self) -> None:
        self.map_draws += 1
        self._changed("map")

    def _set_status(self, text: str) -> None:
        self.status.configure(text=text)

    # ---- the runners panel and the live swarm (all on the Tk thread) ------------------------

    def _coordinator_changed(self, coordinator) -> None:
        self.coordinator = coordinator
        live_swarm = coordinator.swarm if coordinator is not None else None
        for worker in (self.plan_worker, self.pareto_worker):
            worker.session.live_swarm = live_swarm
        self.controls.set_live_available(coordinator is not None)

    def _local_runners_started(self, model: str) -> None:
        # Local runners serve `model`: plan that model over them, as Deploy will load it there.
        self.controls.set_model(model)
        self.controls.select_live()
        self._set_status(f"Planning {model} over the live peers (local runners join in a few seconds)")
        self.request_plan()

    @staticmethod
    def _live_region(outcome: PlanOutcome):
        """Live peers are often a few nearby machines: zoom to them so the tour can be seen."""
        if not outcome.request.live or not outcome.peers:
            return None
        points = [(p.lat, p.lon) for p in outcome.peers]
        if outcome.ingress is not None:
            points.append((outcome.ingress.lat, outcome.ingress.lon))
        return region_around(points)

    def _deploy_started(self, plan) -> None:
        self._deployed_stages = tuple(s.peer_id for s in plan.stages)
        self._stage_status = {peer_id: StageStatus.PENDING for peer_id in self._deployed_stages}
        self._show_deploy()

    def _stage_progress(self, peer_id: str, _fraction: float, status: str) -> None:
        if self._stage_status.get(peer_id) != status:
            self._stage_status[peer_id] = status
            self._show_deploy()

    def _show_deploy(self) -> None:
        shown = self.outcome.carbon_plan if self.outcome is not None else None
        if shown is not None and tuple(s.peer_id for s in shown.stages) == self._deployed_stages:
            self.map.show_deploy(self._stage_status)
            self.map_blit.update()
        self._changed("deploy")

    def _live_tick(self) -> None:
        """Follow the coordinator's peers: a join or death re-plans (live mode), a status change
        recolours the rings on the map; then observers hear a tick."""
        try:
            rows = () if self.coordinator is None else tuple(
                (p["id"], p["lat"], p["lon"], p["status"]) for p in self.coordinator.all_peers())
        except Exception:         # stopped between two ticks
            rows = ()
        if rows != self._live_rows:
            self._live_rows = rows
            live_ids = tuple(sorted(r[0] for r in rows if r[3] != PeerStatus.DEAD))
            if self.coordinator is not None:
                self.controls.set_live_available(True, len(live_ids))
            if live_ids != self.controls.live_key:
                self.controls.live_key = live_ids
                if self.controls.live_selected():
                    self._set_status(f"Live peers changed: re-planning over {len(live_ids)} runner(s)")
                    self.request_plan()
            if self.outcome is not None and self.outcome.request.live:
                self.map.show_runner_status(rows)
                self.map_blit.update()
        self._changed("tick")
        self.root.after(LIVE_POLL_MS, self._live_tick)

    # ---- exports ---------------------------------------------------------------------------

    def export_plan(self) -> None:
        if self.outcome is None or self.outcome.error:
            self._set_status("Nothing to export: no plan yet")
            return
        plan = self.outcome.carbon_plan if self.comparison.selected_plan_key() == "carbon" else self.outcome.vram_plan
        path = filedialog.asksaveasfilename(defaultextension=".json", initialfile=f"prismn-plan-{plan.policy}.json",
                                            filetypes=[("JSON", "*.json")])
        if path:
            export.write_plan_json(plan, path)
            self._set_status(f"Plan ({plan.policy}) written to {path}")

    def export_map(self) -> None:
        path = filedialog.asksaveasfilename(defaultextension=".png", initialfile="prismn-map.png",
                                            filetypes=[("PNG", "*.png")])
        if path:
            with self.map.all_drawn():
                export.write_figure_png(self.map_figure, path)
            self._set_status(f"Map written to {path}")

    def _changed(self, event: str) -> None:
        for observer in self.observers:
            observer(event)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.plan_worker.stop()
        self.pareto_worker.stop()
        self.root.quit()
        self.root.destroy()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        app = PrismnApp(args)
        if args.state_file:
            state_file.attach(app, args.state_file)
    except Exception as exc:  # e.g. no display: say so plainly
        print(f"prismn: cannot start the window: {exc}", file=sys.stderr)
        return 1
    app.root.mainloop()
    return 0
