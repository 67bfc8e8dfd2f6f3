"""The "Carbon 24 h" tab: a timeline of the carbon plan's gCO2 per 1k tokens and of the swarm's cleanest /
dirtiest peers (history + forecast, now marked), the greenest window for a batch, and migration proposals.

A shell around the pure engine.planning.carbon_time / replacement functions: series and fresh values
are fetched on a worker thread (CarbonResolver: live sources when configured, else nothing to draw but
flat lines, said so on the chart); the Tk thread only draws. Migration proposals compare the running
plan (the live deployment's when there is one, else the plan shown when the tab first saw it) with a
fresh carbon plan, every 15 min and on "Check now"; "auto" applies a proposal that pays, "ask me"
waits for the button. Every applied or dismissed proposal goes into the history.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import customtkinter as ctk
from matplotlib.backends.backend_tkagg import FigureCanvasTkAgg
from matplotlib.figure import Figure

from engine.plan import Plan
from engine.planning.replacement import MigrationDecision, ServingRate
from prismn_gui.carbon_texts import decision_from_dict, duration, plan_peers, proposal_text, window_text
from prismn_gui.carbon_timeline import draw_message, draw_timeline, fetch_series

WINDOW_H = 12                 # the timeline shows 12 h back and 12 h ahead: 24 h with now in the middle
STEP = timedelta(minutes=30)
CHECK_EVERY_MS = 15 * 60 * 1000
ASSUMED_RATE = ServingRate(requests_per_s=0.5, tokens_per_request=250.0)   # when nothing is measured


class CarbonTimeTab:
    def __init__(self, parent, root, theme: str = "light",
                 on_migrate: Callable[[Plan, MigrationDecision], str] | None = None,
                 measured_rate: Callable[[], ServingRate | None] | None = None,
                 running_plan: Callable[[], Plan | None] | None = None,
                 on_updated: Callable[[], None] | None = None,
                 coordinator: Callable[[], object | None] | None = None) -> None:
        self.root = root
        self._coordinator = coordinator or (lambda: None)
        self._on_updated = on_updated or (lambda: None)
        self._points: tuple = ()
        self._on_migrate = on_migrate
        self._measured_rate = measured_rate or (lambda: None)
        self._running_plan = running_plan or (lambda: None)
        self._results: queue.Queue = queue.Queue()
        self._outcome = None
        self._series: dict = {}
        self._note = ""
        self._adopted: Plan | None = None       # the "running" plan when no deployment runs
        self.proposal: tuple[Plan, MigrationDecision] | None = None
        self.history: list[str] = []
        self._resolver = None
        small = ctk.CTkFont(size=11)
        bold = ctk.CTkFont(size=12, weight="bold")

        self.figure = Figure(figsize=(6.2, 2.2), dpi=100)
        self.canvas = FigureCanvasTkAgg(self.figure, master=parent)
        self.canvas.mpl_connect("draw_event", lambda _e: self._on_updated())
        self._dark = theme == "dark"
        self._pending_draw = None          # the chart's latest contents, built when the tab is shown

        # The controls are packed from the bottom first, so a short tab squeezes the chart, not them.
        migration = ctk.CTkFrame(parent)
        migration.pack(side="bottom", fill="x", pady=(4, 0))
        window = ctk.CTkFrame(parent)
        window.pack(side="bottom", fill="x", pady=(4, 0))
        self.canvas.get_tk_widget().pack(side="top", fill="both", expand=True)
        entries = ctk.CTkFrame(window, fg_color="transparent")
        entries.pack(fill="x", padx=8, pady=(4, 0))
        self.tokens = ctk.CTkEntry(entries, width=80, height=24, font=small)
        self.tokens.insert(0, "100000")       # ~5 h of a 70B tour at ~180 ms/token
        self.hours = ctk.CTkEntry(entries, width=40, height=24, font=small)
        self.hours.insert(0, "12")
        self.find_button = ctk.CTkButton(entries, text="Find", width=50, height=24, font=small,
                                         command=self.find_window)
        for widget in (ctk.CTkLabel(entries, text="Greenest window", font=bold),
                       ctk.CTkLabel(entries, text="for", font=small), self.tokens,
                       ctk.CTkLabel(entries, text="tokens within", font=small), self.hours,
                       ctk.CTkLabel(entries, text="h", font=small), self.find_button):
            widget.pack(side="left", padx=(0, 4))
        self.window_text = ctk.CTkLabel(window, text="", font=small, anchor="w", justify="left",
                                        wraplength=430, height=30)
        self.window_text.pack(fill="x", padx=8, pady=(0, 2))

        head = ctk.CTkFrame(migration, fg_color="transparent")
        head.pack(fill="x", padx=8, pady=(4, 0))
        self.mode = ctk.CTkSegmentedButton(head, values=["auto", "ask me"], font=small, height=24)
        self.mode.set("ask me")
        self.check_button = ctk.CTkButton(head, text="Check now", width=74, height=24, font=small,
                                          command=self.check_now)
        self.migrate_button = ctk.CTkButton(head, text="Migrate", width=64, height=24, font=small,
                                            state="disabled", command=self.accept)
        self.dismiss_button = ctk.CTkButton(head, text="Dismiss", width=64, height=24, font=small,
                                            state="disabled", command=self.dismiss, fg_color="gray50")
        for widget in (ctk.CTkLabel(head, text="Re-placement", font=bold), self.mode, self.check_button,
                       self.migrate_button, self.dismiss_button):
            widget.pack(side="left", padx=(0, 6))
        # Fixed height: the buttons above must not move when a longer proposal arrives.
        self.proposal_text = ctk.CTkLabel(migration, text="No proposal yet.", font=small, anchor="nw",
                                          justify="left", wraplength=430, height=44)
        self.proposal_text.pack(fill="x", padx=8)
        self.history_box = ctk.CTkTextbox(migration, height=40, font=ctk.CTkFont(size=10))
        self.history_box.pack(fill="x", padx=8, pady=(0, 4))
        self.history_box.insert("end", "History: none yet\n")
        self.history_box.configure(state="disabled")
        self.root.after(100, self._poll)
        self.root.after(CHECK_EVERY_MS, self._scheduled_check)

    # ---- for the app's state file (tests) and its hooks ----------------------------------------

    def widgets(self) -> dict:
        return {"carbon_check_now": self.check_button, "carbon_migrate": self.migrate_button,
                "carbon_dismiss": self.dismiss_button, "carbon_find_window": self.find_button}

    def snapshot(self) -> dict:
        running = self._running_plan() or self._adopted
        return {
            "timeline_points": len(self._points),
            "timeline_known": any(p.known for p in self._points),
            "series_peers": len(self._series),
            "running_stages": [{"peer_id": s.peer_id, "lat": s.lat, "lon": s.lon}
                               for s in (running.stages if running else ())],
            "proposal": self.proposal_text.cget("text"),
            "proposal_pending": self.proposal is not None,
            "window": self.window_text.cget("text"),
            "history": list(self.history),
            "mode": self.mode.get(),
        }

    # ---- inputs from the app -------------------------------------------------------------------

    def show(self, outcome) -> None:
        """A new plan outcome: refetch series for its swarm and redraw the timeline."""
        live = self._live()
        if live is not None:
            threading.Thread(target=self._ensure_live, args=(live,), daemon=True).start()
        if outcome is None or outcome.error or outcome.carbon_plan is None or not outcome.carbon_plan.feasible:
            return
        self._outcome = outcome
        if self._adopted is None or self._adopted.model != outcome.carbon_plan.model:
            self._adopted = outcome.carbon_plan
        self._run("timeline", self._compute_timeline, outcome)

    # ---- background work -----------------------------------------------------------------------

    def _run(self, kind: str, fn, *args) -> None:
        def work() -> None:
            try:
                self._results.put((kind, fn(*args)))
            except Exception as exc:  # shown in the tab, never a crash of the app
                self._results.put((kind, exc))
        threading.Thread(target=work, daemon=True, name=f"carbon-{kind}").start()

    def resolver(self):
        if self._resolver is None:
            from engine.carbon import CarbonResolver
            self._resolver = CarbonResolver()
        return self._resolver

    def _footprint(self, request):
        from engine.model import footprint, load_spec
        return footprint(load_spec(request.model), quant=request.quant, context=int(request.context_text))

    def _compute_timeline(self, outcome):
        from engine.planning.carbon_time import plan_timeline
        now = datetime.now(UTC)
        stage_ids = {s.peer_id for s in outcome.carbon_plan.stages}
        series, note = fetch_series(self.resolver(), list(outcome.peers), outcome.request.signal, stage_ids)
        moments = [now + STEP * i for i in range(-2 * WINDOW_H, 2 * WINDOW_H + 1)]
        fp = self._footprint(outcome.request)
        return now, series, note, plan_timeline(outcome.carbon_plan, fp, outcome.peers, series, moments)

    def find_window(self) -> None:
        outcome = self._outcome
        if outcome is None:
            return
        try:
            tokens, hours = int(self.tokens.get()), float(self.hours.get())
        except ValueError:
            self.window_text.configure(text=f"tokens = {self.tokens.get()!r}, within h = {self.hours.get()!r}: "
                                            "expected a whole number and a number of hours")
            return
        self.window_text.configure(text="Searching…")

        def work():
            from engine.planning.carbon_time import greenest_window
            return greenest_window(self._footprint(outcome.request), outcome.peers, outcome.ingress,
                                   outcome.request.weights, self._series, datetime.now(UTC), tokens, hours)
        self._run("window", work)

    def _live(self):
        """The embedded coordinator when it runs a ready deployment (its re-placement then decides)."""
        coordinator = self._coordinator()
        try:
            status = coordinator.deployment_status() if coordinator is not None else None
        except Exception:
            return None
        return coordinator if status is not None and status["ready"] else None

    def _check_live(self, coordinator) -> None:
        """Ask the coordinator's re-placement (fresh intensities, measured request rate); it migrates
        only when this tab accepts (or in auto mode), so the GUI's toggle stays the one switch."""
        self.proposal_text.configure(text="Checking fresh intensities (coordinator)…")

        def work():
            self._ensure_live(coordinator)
            decision = coordinator.check_replacement().result(120)
            if decision is None:
                raise RuntimeError("nothing to check: no ready deployment")
            plan = coordinator.deployment_status()["plan"]
            return plan, decision, "live"
        self._run("proposal", work)

    def _ensure_live(self, coordinator) -> None:
        """Turn on the coordinator's schedule (every 15 min and on joins / deaths) in "ask" mode: this
        tab shows its proposals and applies them itself in auto mode. Safe from any thread."""
        if coordinator.replacement_snapshot() is None:
            signal = self._outcome.request.signal if self._outcome is not None else "average"
            coordinator.enable_replacement(mode="ask", signal=signal,
                                           on_change=lambda: self._results.put(("live_changed", coordinator)))

    def _live_changed(self, coordinator) -> None:
        """The coordinator's schedule checked: show a proposal it left waiting."""
        snapshot = coordinator.replacement_snapshot()
        if snapshot and snapshot["proposal"] and self.proposal is None:
            status = coordinator.deployment_status()
            self._show_proposal(status["plan"] if status else None, decision_from_dict(snapshot["proposal"]), "live")

    def check_now(self) -> None:
        live = self._live()
        if live is not None:
            return self._check_live(live)
        outcome = self._outcome
        running = self._running_plan() or self._adopted
        if outcome is None or running is None:
            return
        self.proposal_text.configure(text="Checking fresh intensities…")
        rate = self._measured_rate()

        def work():
            import dataclasses

            from engine.planning.planner import make_plan
            from engine.planning.replacement import decide_migration
            from engine.planning.types import Policy
            peers = outcome.peers
            fresh = self.resolver().signals([p.lat for p in peers], [p.lon for p in peers],
                                            kind=outcome.request.signal)
            fresh_peers = tuple(p if p.carbon_source.value == "explicit" else
                                dataclasses.replace(p, carbon_g_per_kwh=s.g_per_kwh, carbon_source=s.source)
                                for p, s in zip(peers, fresh, strict=True))
            fp = self._footprint(outcome.request)
            candidate = make_plan(fp, fresh_peers, outcome.ingress, Policy.CARBON, outcome.request.weights)
            return candidate, decide_migration(running, candidate, fp, fresh_peers, rate or ASSUMED_RATE), rate
        self._run("proposal", work)

    def _scheduled_check(self) -> None:
        self.check_now()
        self.root.after(CHECK_EVERY_MS, self._scheduled_check)

    # ---- applying results on the Tk thread -----------------------------------------------------

    def _poll(self) -> None:
        while not self._results.empty():
            kind, result = self._results.get_nowait()
            if isinstance(result, Exception):
                self._show_error(kind, f"{type(result).__name__}: {result}")
            elif kind == "timeline":
                now, self._series, self._note, self._points = result
                self._draw(now, self._points)
            elif kind == "window":
                self.window_text.configure(text=window_text(result, datetime.now(UTC)))
            elif kind == "proposal":
                self._show_proposal(*result)
            elif kind == "live_changed":
                self._live_changed(result)
            elif kind == "migrated":
                record, auto = result
                self.proposal_text.configure(text=f"Migration {record.outcome if record else 'not needed'}.")
                if record is not None:
                    self._record(f"{'auto' if auto else 'accepted'}: {'+'.join(record.to_peers)}, saves "
                                 f"{record.decision.saving_fraction:.0%}, cost {record.decision.migration_g:.2f} g, "
                                 f"payback {duration(record.decision.payback_s)} — {record.outcome} "
                                 f"in {record.took_s:.1f} s")
            self._on_updated()
        self.root.after(100, self._poll)

    def _show_error(self, kind: str, text: str) -> None:
        if kind == "timeline":
            self._draw_error(text)
        else:
            (self.window_text if kind == "window" else self.proposal_text).configure(text=text)

    def _show_proposal(self, candidate: Plan, decision: MigrationDecision, rate) -> None:
        rate_text = "measured" if rate is not None else "assumed 0.5 req/s × 250 tokens"
        self.proposal_text.configure(text=proposal_text(decision, rate_text))
        if not decision.migrate:
            self.proposal = None
            self.migrate_button.configure(state="disabled")
            self.dismiss_button.configure(state="disabled")
            return
        self.proposal = (candidate, decision)
        if self.mode.get() == "auto":
            self.accept(auto=True)
        else:
            self.migrate_button.configure(state="normal")
            self.dismiss_button.configure(state="normal")

    def accept(self, auto: bool = False) -> None:
        if self.proposal is None:
            return
        candidate, decision = self.proposal
        live = self._live()
        if live is not None:
            self._clear_proposal()
            self.proposal_text.configure(text="Migrating: new stages load while the old ones serve…")

            def work():
                record = live.accept_migration().result(1800)
                return record, auto
            return self._run("migrated", work)
        outcome = self._on_migrate(candidate, decision) if self._on_migrate else ""
        if not outcome:   # no live deployment: the candidate becomes the plan the tab tracks
            self._adopted = candidate
            outcome = "adopted (no live deployment)"
        self._clear_proposal()
        self._record(f"{'auto' if auto else 'accepted'}: {plan_peers(candidate)}, saves "
                     f"{decision.saving_fraction:.0%}, cost {decision.migration_g:.2f} g, "
                     f"payback {duration(decision.payback_s)} — {outcome}")

    def dismiss(self) -> None:
        proposal, self.proposal = self.proposal, None
        self._clear_proposal()
        if proposal is not None:
            self._record(f"dismissed: {plan_peers(proposal[0])}, saves {proposal[1].saving_fraction:.0%}")

    def _clear_proposal(self) -> None:
        self.proposal = None
        self.migrate_button.configure(state="disabled")
        self.dismiss_button.configure(state="disabled")

    def _record(self, line: str) -> None:
        self.history.append(f"{datetime.now(UTC):%H:%M} {line}")
        self.history_box.configure(state="normal")
        self.history_box.delete("1.0", "end")
        self.history_box.insert("end", "\n".join(reversed(self.history)))
        self.history_box.configure(state="disabled")
        self._on_updated()

    # ---- drawing -------------------------------------------------------------------------------

    def _draw_error(self, text: str) -> None:
        self._pending_draw = lambda: draw_message(self.figure, text)
        self._render_if_shown()

    def _draw(self, now: datetime, points) -> None:
        self._pending_draw = lambda: draw_timeline(self.figure, now, points, self._note)
        self._render_if_shown()

    def _render_if_shown(self) -> None:
        """A hidden tab is neither built nor drawn (the chart's rebuild and draw cost every slider
        update on the map ~0.1 s); the window calls `render` when the tab is chosen."""
        if self.canvas.get_tk_widget().winfo_ismapped():
            self.render()

    def render(self) -> None:
        pending, self._pending_draw = self._pending_draw, None
        if pending is not None:
            pending()
        self.canvas.draw_idle()
