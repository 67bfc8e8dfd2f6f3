"""The deploy / runners area under the map, and what it shares with the window (`AppContext`).

The app builds the area with `build_deploy_area(parent, context)`: the runners panel
(prismn_gui.runners_panel.RunnersPanel), which relies on nothing of the window but its `AppContext`:
the plans shown, the status line, the events it tells the window (PANEL_EVENTS) and, for a panel
shown beside a coordinator started elsewhere (the tests), that coordinator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import customtkinter as ctk

from engine.plan import Plan


@dataclass
class AppContext:
    """What the window shares with the runners panel (all calls on the Tk thread)."""

    root: object
    current_plan: Callable[[], Plan | None]           # the carbon+distance plan now shown
    baseline_plan: Callable[[], Plan | None] = lambda: None     # the VRAM baseline now shown
    set_status: Callable[[str], None] = lambda _text: None      # the window's status line
    # A running EmbeddedCoordinator to show; None: the panel owns one, started by its button (with
    # `store_spec`) and stopped with its runners when the panel is destroyed.
    coordinator: Any = None
    store_spec: str | None = None
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


def build_deploy_area(parent, context: AppContext) -> ctk.CTkFrame:
    from prismn_gui.runners_panel import RunnersPanel  # it imports AppContext from here

    return RunnersPanel(parent, context)
