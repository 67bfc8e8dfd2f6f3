"""The runners panel: live peers, local runners, Deploy with per-stage progress, and a prompt box.

`RunnersPanel(master, context)` with the window's `AppContext` (prismn_gui.deploy_area): the plans it
deploys, the status line, the events it tells the window, and a running `EmbeddedCoordinator` to show
or none; with none the panel owns a coordinator that its "Start coordinator" button starts, and stops
it (and the runners it spawned) when the panel is destroyed. Coordinator callbacks arrive on the coordinator's
thread; they go through a queue that the Tk thread drains every 50 ms, so no Tk call ever happens
off the Tk thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import customtkinter as ctk

from engine.coordinator.embedded import EmbeddedCoordinator
from engine.model.source import SMOLLM2_NAMES
from engine.plan import Plan
from engine.status import PeerStatus, StageStatus
from prismn_gui.deploy_area import AppContext
from prismn_gui.live_chart import LiveChart
from prismn_gui.local_model import LocalModelMenu
from prismn_gui.serving_controls import ServingControls, app_api_bind
from prismn_gui.status_colours import STATUS_COLOURS, status_colour

__all__ = ["STATUS_COLOURS", "RunnersPanel"]

POLL_MS = 50
REFRESH_MS = 1000
MAX_LOCAL_RUNNERS = 8
HINT_IDLE = "Start the coordinator, then local runners (or runners elsewhere with the ticket)."
# What runners on this machine serve: the bundled SmolLM2 (no download), as its preset name.
LOCAL_MODEL = "smollm2-135m"


class RunnersPanel(ctk.CTkFrame):
    def __init__(self, master: Any, context: AppContext) -> None:
        super().__init__(master)
        self._context = context
        self.coordinator: EmbeddedCoordinator | None = context.coordinator
        self._owns_coordinator = context.coordinator is None
        self._store_spec = context.store_spec
        self._get_plan = context.current_plan
        self._set_status = context.set_status
        self._events: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._stage_rows: dict[str, tuple[ctk.CTkLabel, ctk.CTkProgressBar]] = {}
        self._stage_status: dict[str, str] = {}
        self._peer_rows_shown: list[tuple] = []
        self.last_result: dict[str, Any] | None = None
        self._both: list[str] = []            # what "Deploy both" still has to do
        self.generations = 0
        self._build()
        self._sync_buttons()
        self.after(POLL_MS, self._drain)
        self.after(REFRESH_MS, self._refresh)
        self.bind("<Destroy>", self._on_destroy, add="+")

    # ---- layout ---------------------------------------------------------------------------

    def _build(self) -> None:
        # One font for every row made later: rows come and go each refresh, and a font object
        # left to the garbage collector may be finalised on the coordinator's thread (a Tk call
        # off the Tk thread), so none are created after this.
        self._font = small = ctk.CTkFont(size=11)
        top = ctk.CTkFrame(self, fg_color="transparent")
        top.pack(fill="x", padx=10, pady=(8, 2))
        ctk.CTkLabel(top, text="Runners", font=ctk.CTkFont(size=13, weight="bold")).pack(side="left")
        self.start_button = ctk.CTkButton(top, text="Start coordinator", width=130, command=self._start_coordinator)
        self.start_button.pack(side="left", padx=(10, 0))
        self.ticket_entry = ctk.CTkEntry(top, width=80, font=small, placeholder_text="ticket")
        self.ticket_entry.pack(side="left", fill="x", expand=True, padx=6)
        self.copy_button = ctk.CTkButton(top, text="Copy", width=50, command=self._copy_ticket)
        self.copy_button.pack(side="left")
        # On the ticket row: the runners row is full since the model folder menu joined it.
        self.both_button = ctk.CTkButton(top, text="Measure both", width=96, command=self._deploy_both)
        self.both_button.pack(side="left", padx=(6, 0))

        row = ctk.CTkFrame(self, fg_color="transparent")
        row.pack(fill="x", padx=10, pady=2)
        ctk.CTkLabel(row, text="Local", font=small).pack(side="left")
        self.runner_count = ctk.CTkOptionMenu(row, values=[str(n) for n in range(1, MAX_LOCAL_RUNNERS + 1)],
                                              width=52)
        self.runner_count.set("3")
        self.runner_count.pack(side="left", padx=4)
        self.local_model = LocalModelMenu(row, on_message=lambda text: self.hint.configure(text=text))
        self.local_model.pack(side="left", padx=4)
        self.local_button = ctk.CTkButton(row, text="Start local runners", width=124, command=self._start_local)
        self.local_button.pack(side="left")
        self.deploy_button = ctk.CTkButton(row, text="Deploy", width=70, command=self._deploy)
        self.deploy_button.pack(side="right")

        self.hint = ctk.CTkLabel(self, text=HINT_IDLE, anchor="w", text_color="gray55", font=small,
                                 wraplength=560, justify="left")
        self.hint.pack(fill="x", padx=10)

        # Fixed heights, nothing expands: the map above keeps the space the window gives.
        lists = ctk.CTkFrame(self, fg_color="transparent")
        lists.pack(fill="x", padx=10, pady=2)
        lists.grid_columnconfigure((0, 1), weight=1, uniform="lists")
        self.peer_list = ctk.CTkTextbox(lists, height=72, font=small, wrap="none", activate_scrollbars=True)
        self.peer_list.grid(row=0, column=0, sticky="ew", padx=(0, 4))
        for status, colour in STATUS_COLOURS.items():
            self.peer_list.tag_config(status, foreground=colour)
        self.peer_list.insert("end", "No runners yet.")
        self.peer_list.configure(state="disabled")
        self.stage_list = ctk.CTkFrame(lists, height=72)
        self.stage_list.grid(row=0, column=1, sticky="nsew")
        ctk.CTkLabel(self.stage_list, text="Nothing deployed.", font=small, anchor="w").pack(fill="x", padx=8)

        prompt_row = ctk.CTkFrame(self, fg_color="transparent")
        prompt_row.pack(fill="x", padx=10, pady=2)
        self.prompt_entry = ctk.CTkEntry(prompt_row, placeholder_text="Prompt", font=small)
        self.prompt_entry.pack(side="left", fill="x", expand=True)
        self.prompt_entry.bind("<Return>", lambda _e: self._generate())
        self.generate_button = ctk.CTkButton(prompt_row, text="Generate", width=90, command=self._generate)
        self.generate_button.pack(side="left", padx=(6, 0))
        # The answer and its live chart side by side: the map above keeps its height.
        # Shown from the first generation on: until then the map keeps that height too.
        self._answer = answer = ctk.CTkFrame(self, fg_color="transparent")
        answer.grid_columnconfigure(0, weight=2, uniform="answer")
        answer.grid_columnconfigure(1, weight=3, uniform="answer")
        self.output = ctk.CTkTextbox(answer, height=104, font=small, wrap="word")
        self.output.grid(row=0, column=0, sticky="nsew", padx=(0, 4))
        self.chart = LiveChart(answer, dark=ctk.get_appearance_mode() == "Dark")
        self.chart.grid(row=0, column=1, sticky="nsew")
        self._stats_row = stats_row = ctk.CTkFrame(self, fg_color="transparent")
        stats_row.pack(fill="x", padx=10, pady=(0, 4))
        self.stats = ctk.CTkLabel(stats_row, text="", anchor="w", font=small)
        self.stats.pack(side="left", fill="x", expand=True)
        self.serving = ServingControls(prompt_row, stats_row, font=small)
        self._answer_shown = False

    def _sync_buttons(self) -> None:
        running = self.coordinator is not None
        self.start_button.configure(state="disabled" if running or not self._owns_coordinator else "normal")
        for button in (self.local_button, self.deploy_button, self.generate_button, self.copy_button,
                       self.both_button):
            button.configure(state="normal" if running else "disabled")
        if running:
            self.ticket_entry.configure(state="normal")
            self.ticket_entry.delete(0, "end")
            self.ticket_entry.insert(0, self.coordinator.ticket)
            self.ticket_entry.configure(state="readonly")

    # ---- actions (Tk thread) --------------------------------------------------------------

    def _start_coordinator(self) -> None:
        self.start_button.configure(state="disabled")
        self.hint.configure(text="Starting the coordinator…")
        coordinator = EmbeddedCoordinator(self._store_spec, api_bind=app_api_bind())

        def start() -> None:              # binding and opening the store take a moment: off the Tk thread
            try:
                coordinator.start()
                self._events.put(("started", coordinator))
            except Exception as exc:
                self._events.put(("error", f"coordinator did not start: {exc}"))

        threading.Thread(target=start, daemon=True).start()

    def _copy_ticket(self) -> None:
        if self.coordinator is not None:
            self.clipboard_clear()
            self.clipboard_append(self.coordinator.ticket)
            self.hint.configure(text="Ticket copied: python -m engine.runner --ticket <ticket> --lat .. --lon ..")

    def _start_local(self) -> None:
        if self.coordinator is None:
            return
        # Runners here can only serve the bundled SmolLM2 (no download), so that is what they load;
        # the window then plans SmolLM2 over the live peers, so Deploy matches what they hold.
        plan = self._get_plan()
        model = plan.model.name if plan is not None and plan.model.name.lower() in SMOLLM2_NAMES else LOCAL_MODEL
        if self.local_model.folder is not None:            # "Model folder…": a local HF folder instead
            model = str(self.local_model.folder)
        count = int(self.runner_count.get())
        try:
            ids = self.coordinator.start_local_runners(count, model=model)
        except Exception as exc:
            self.hint.configure(text=f"local runners: {exc}")
            return
        self.hint.configure(text=f"Started {len(ids)} local runner(s) for {model} with emulated WAN (frames "
                                 "delayed by the latency model between their cities); they join in a few seconds.")
        self._emit("local_runners", model)

    def _emit(self, event: str, *args: Any) -> None:
        self._context.panel_event(event, *args)

    def _deploy_both(self) -> None:
        """The VRAM baseline, then the carbon+distance plan, each measured on the same prompt."""
        if not self.prompt_entry.get().strip():
            self.hint.configure(text="Type a prompt first: both plans are measured on it.")
            return
        self._both = ["generate", "deploy-carbon", "generate"]
        self._deploy(self._baseline_plan())

    def _baseline_plan(self) -> Plan | None:
        return self._context.baseline_plan()

    def _continue_both(self) -> None:
        if not self._both:
            return
        step = self._both.pop(0)
        if step == "generate":
            self._generate()
        else:
            self._deploy(self._get_plan())

    def _deploy(self, plan: Plan | None = None) -> None:
        plan = plan or self._get_plan()
        if self.coordinator is None or plan is None:
            self.hint.configure(text="No plan to deploy yet." if self.coordinator else HINT_IDLE)
            return
        refusal = _undeployable(plan, {p["id"] for p in self.coordinator.live_peers()})
        if refusal:
            self.hint.configure(text=refusal)
            return
        for child in self.stage_list.winfo_children():
            child.destroy()
        self._stage_rows.clear()
        self._stage_status = {stage.peer_id: StageStatus.PENDING for stage in plan.stages}
        self._emit("deploy_started", plan)
        self.deploy_button.configure(state="disabled")
        self.hint.configure(text=f"Deploying {plan.model.name} on the live runners…")
        future = self.coordinator.deploy(plan, lambda *event: self._events.put(("progress", *event)),
                                         model=self.local_model.model_for(plan.model.name))
        future.add_done_callback(lambda done: self._events.put(("deployed", done)))

    def _generate(self) -> None:
        prompt = self.prompt_entry.get().strip()
        if self.coordinator is None or not prompt:
            return
        if not self._answer_shown:
            self._answer.pack(fill="x", padx=10, pady=2, before=self._stats_row)
            self._answer_shown = True
        self.output.delete("1.0", "end")
        self.stats.configure(text="generating…")
        self.generate_button.configure(state="disabled")
        status = self.coordinator.deployment_status()
        self.chart.begin(status["plan"] if status else None)
        try:        # the ingress applies the chat template of instruct models itself
            future = self.coordinator.generate(prompt, self.serving.max_tokens(),
                                               lambda text: self._events.put(("token", text)),
                                               sampling=self.serving.sampling())
        except Exception as exc:    # e.g. the coordinator stopped meanwhile: shown like any failure
            future = Future()
            future.set_exception(exc)
        future.add_done_callback(lambda done: self._events.put(("generated", done)))

    # ---- events from the coordinator thread -----------------------------------------------

    def _drain(self) -> None:
        try:
            while True:
                self._handle(*self._events.get_nowait())
        except queue.Empty:
            pass
        if self.winfo_exists():
            self.after(POLL_MS, self._drain)

    def _handle(self, kind: str, *args: Any) -> None:
        if kind == "started":
            self.coordinator = args[0]
            self._sync_buttons()
            self.hint.configure(text="Coordinator running. Start local runners or share the ticket.")
            self._set_status("coordinator started")
            self._emit("coordinator", self.coordinator)
        elif kind == "error":
            self.hint.configure(text=args[0])
            self._sync_buttons()
        elif kind == "progress":
            self._show_progress(*args)
        elif kind == "deployed":
            self.deploy_button.configure(state="normal")
            # Said where it stays in view: the runner list's own "emulated WAN" is off its right edge.
            wan = " Frames between the local runners cross an emulated WAN." \
                if any(row[-1] for row in self._peer_rows_shown) else ""
            self.hint.configure(text=_outcome_text(args[0], lambda dep_id: f"Deployed ({dep_id[:8]}): ready.{wan}"))
            if args[0].exception() is None:
                self._continue_both()
            else:
                self._both.clear()
            if self.coordinator is not None and self.coordinator.deployment_status() is not None:
                self.serving.show_api(self.coordinator.api_url)
        elif kind == "token":
            self.output.insert("end", args[0])
            self.output.see("end")
            self.chart.token()
        elif kind == "generated":
            self.generate_button.configure(state="normal")
            future: Future = args[0]
            if future.exception() is not None:
                self.stats.configure(text=f"failed: {future.exception()}")
                self._both.clear()
                return
            result = self.last_result = future.result()
            recovered = f" · recovered from {result['recoveries']} lost runner(s)" if result["recoveries"] else ""
            measured = result.get("measured") or {}
            ttft = f"TTFT {measured['ttft_s']:.2f} s · " if measured.get("ttft_s") is not None else ""
            grams = measured.get("g_co2", result["g_co2"])
            how = " (estimated: CPU time × power model)" if measured.get("estimated") else ""
            self.stats.configure(text=f"{len(result['token_ids'])} tokens · {ttft}{result['tokens_per_s']:.1f} "
                                      f"tokens/s · {grams:.3g} gCO2 measured{how}{recovered}")
            self.chart.finish(result)
            self.generations += 1
            self._emit("generated", result["plan"].policy, result["plan"], result)
            self._continue_both()

    def _show_progress(self, peer_id: str, fraction: float, status: str) -> None:
        if peer_id not in self._stage_rows:
            row = ctk.CTkFrame(self.stage_list, fg_color="transparent")
            row.pack(fill="x", padx=4)
            label = ctk.CTkLabel(row, text=peer_id, width=150, anchor="w", font=self._font)
            label.pack(side="left")
            bar = ctk.CTkProgressBar(row, height=10)
            bar.pack(side="left", fill="x", expand=True, padx=4)
            self._stage_rows[peer_id] = (label, bar)
        label, bar = self._stage_rows[peer_id]
        bar.set(fraction)
        bar.configure(progress_color=STATUS_COLOURS[PeerStatus.LIVE] if status == StageStatus.PENDING
                      else status_colour(status))
        label.configure(text=f"{peer_id}  {status}")
        self._stage_status[peer_id] = status
        self._emit("stage", peer_id, fraction, status)

    def _refresh(self) -> None:
        if not self.winfo_exists():
            return
        if self.coordinator is not None:
            rows = [(p["id"], p["gpu"], p["free_vram_gb"], p["utilization"], p["carbon_g_per_kwh"], p["status"],
                     p.get("emulated_wan", False)) for p in self.coordinator.live_peers()]
            if rows != self._peer_rows_shown:
                self._show_peers(rows)
        self.after(REFRESH_MS, self._refresh)

    def _show_peers(self, rows: list[tuple]) -> None:
        self._peer_rows_shown = rows
        self.peer_list.configure(state="normal")
        self.peer_list.delete("1.0", "end")
        for peer_id, gpu, free_gb, utilization, carbon, status, emulated in rows:
            busy = f"{utilization:.0f}%" if utilization is not None else "–"
            self.peer_list.insert("end", "● ", status)
            wan = " · emulated WAN" if emulated else ""
            self.peer_list.insert("end", f"{peer_id} · {gpu or '?'} · {free_gb:.2f} GB free · {busy} · "
                                         f"{carbon:.0f} g/kWh · {status}{wan}\n")
        if not rows:
            self.peer_list.insert("end", "No runners yet.")
        self.peer_list.configure(state="disabled")

    # ---- for the window's state file (tests) ----------------------------------------------

    def widgets(self) -> dict[str, Any]:
        return {"start_coordinator": self.start_button, "runner_count": self.runner_count,
                "start_local_runners": self.local_button, "deploy": self.deploy_button,
                "prompt": self.prompt_entry, "generate": self.generate_button, "deploy_both": self.both_button}

    def snapshot(self) -> dict[str, Any]:
        result = self.last_result
        return {
            "coordinator_running": self.coordinator is not None,
            "runners": [{"id": r[0], "status": r[5]} for r in self._peer_rows_shown],
            "stages": dict(self._stage_status),
            "hint": self.hint.cget("text"),
            "deploy_enabled": self.deploy_button.cget("state") == "normal",
            "output": self.output.get("1.0", "end-1c"),
            "stats": self.stats.cget("text"),
            "chart_points": self.chart.points,
            "generations": self.generations,
            "generation": None if result is None else {
                "text": result["text"], "tokens": len(result["token_ids"]),
                "tokens_per_s": result["tokens_per_s"], "g_co2": result["g_co2"]},
        }

    def _on_destroy(self, event: Any) -> None:
        if event.widget is self and self._owns_coordinator and self.coordinator is not None:
            coordinator, self.coordinator = self.coordinator, None
            coordinator.stop()            # ends the local runners too


def _undeployable(plan: Plan, live_ids: set[str]) -> str | None:
    """Why `plan` cannot go onto the live runners (a person sees this instead of a failed deploy)."""
    if not plan.feasible:
        return (f"The plan is infeasible ({plan.model.name} does not fit the peers): pick a smaller model "
                "or start more runners.")
    missing = [s.peer_id for s in plan.stages if s.peer_id not in live_ids]
    if missing:
        return (f"The plan uses {len(missing)} peer(s) that are not live runners ({missing[0]}…): choose "
                "Swarm → Live peers (coordinator) to plan over the runners.")
    return None


def _outcome_text(future: Future, describe: Callable[[Any], str]) -> str:
    error = future.exception()
    return describe(future.result()) if error is None else f"Deploy failed: {error}"
