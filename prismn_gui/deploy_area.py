"""The deploy / runners area under the map, and the seam where the coordinator's panel plugs in.

The app builds this area through `build_deploy_area(parent, context)`. While no
`prismn_gui/runners_panel.py` exists, a disabled Deploy button and a hint are shown. The
coordinator's module only has to define `RunnersPanel(parent, context)` (a CTkFrame); the app
then uses it without other edits. `AppContext` is all such a panel may rely on.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field

import customtkinter as ctk

from engine.plan import Plan

COORDINATOR_HINT = "Start the coordinator to see runners and deploy a plan (python -m engine coordinator …)."


@dataclass
class AppContext:
    """What the window shares with pluggable panels (all calls on the Tk thread)."""

    root: object
    current_plan: Callable[[], Plan | None]           # the carbon+distance plan now shown
    baseline_plan: Callable[[], Plan | None]          # the VRAM baseline now shown
    set_status: Callable[[str], None]
    _listeners: list[Callable[[object], None]] = field(default_factory=list)
    _panel_listeners: dict[str, list[Callable[..., None]]] = field(default_factory=dict)

    def on_outcome(self, listener: Callable[[object], None]) -> None:
        """Call `listener(outcome)` after each applied planning update (a PlanOutcome)."""
        self._listeners.append(listener)

    def publish(self, outcome: object) -> None:
        for listener in self._listeners:
            listener(outcome)

    # What a panel tells the window (PANEL_EVENTS); the window listens with `on_panel`.
    def on_panel(self, event: str, listener: Callable[..., None]) -> None:
        if event not in PANEL_EVENTS:
            raise ValueError(f"event={event!r}: expected one of {PANEL_EVENTS}")
        self._panel_listeners.setdefault(event, []).append(listener)

    def panel_event(self, event: str, *args: object) -> None:
        for listener in self._panel_listeners.get(event, ()):
            listener(*args)


# coordinator(EmbeddedCoordinator | None): started or stopped; local_runners(model): runners of
# `model` were spawned; deploy_started(plan); stage(peer_id, fraction, status): a stage's progress;
# generated(policy, plan, result): a generation on the live swarm ended, with its measurements.
PANEL_EVENTS = ("coordinator", "local_runners", "deploy_started", "stage", "generated")


class DeployPlaceholder(ctk.CTkFrame):
    def __init__(self, parent, context: AppContext) -> None:
        super().__init__(parent)
        top = ctk.CTkFrame(self, fg_color="transparent")
        top.pack(fill="x", padx=10, pady=(8, 4))
        ctk.CTkLabel(top, text="Runners", font=ctk.CTkFont(size=13, weight="bold")).pack(side="left")
        self.deploy_button = ctk.CTkButton(top, text="Deploy", state="disabled", width=90)
        self.deploy_button.pack(side="right")
        self.hint = ctk.CTkLabel(self, text=COORDINATOR_HINT, anchor="w", text_color="gray55",
                                 font=ctk.CTkFont(size=11), wraplength=520, justify="left")
        self.hint.pack(fill="x", padx=10)
        self.status = ctk.CTkTextbox(self, height=90, font=ctk.CTkFont(size=11))
        self.status.insert("end", "No coordinator connected: no runners, nothing deployed.\n")
        self.status.configure(state="disabled")
        self.status.pack(fill="both", expand=True, padx=10, pady=(4, 8))


def build_deploy_area(parent, context: AppContext) -> ctk.CTkFrame:
    if importlib.util.find_spec("prismn_gui.runners_panel") is not None:
        module = importlib.import_module("prismn_gui.runners_panel")
        return module.RunnersPanel(parent, context)
    return DeployPlaceholder(parent, context)
