"""The window's state as JSON in a file, for tests and benchmarks (`--state-file` / PRISMN_STATE_FILE).

`attach(app, path)` gives the app an observer; the app calls it with what happened ("plan" applied,
"map" or "pareto" drawn, "carbon_time" updated, "deploy" progress, and "tick" from its live poll),
and the observer writes the state: the view-model's summary (weights, both plans, comparison rows),
the screen boxes of the widgets a test clicks, the Pareto points on screen, the runners panel's
snapshot. On a tick it writes only when the panel's snapshot or a widget's place changed (first
mapped, resized), so a test can click where a widget is now.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from prismn_gui import export
from prismn_gui.viewmodel import state_summary


class StateFile:
    def __init__(self, app: Any, path: str) -> None:
        self.app = app
        self.path = path
        self._panel_written = ""

    def __call__(self, event: str) -> None:
        if event == "tick":
            text = json.dumps([self.app.deploy_area.snapshot(), self.widget_boxes()], sort_keys=True)
            if text == self._panel_written:
                return
            self._panel_written = text
        self.write()

    def write(self) -> None:
        app = self.app
        if app.outcome is None:
            return
        state = state_summary(app.outcome, app.update_number)
        state.update({
            "title": app.root.title(),
            "map_draws": app.map_draws,
            "seconds_since_start": time.perf_counter() - app.started,
            "widgets": self.widget_boxes(),
            "tab": app.tabs.get(),
            "pareto_points": self._pareto_screen_points(),
            "pid": os.getpid(),
            "deploy": self._deploy_state(),
            "live_available": app.controls.live_radio.cget("state") == "normal",
            "measured": dict(app.comparison.measured.shown),
            "window": [app.root.winfo_width(), app.root.winfo_height()],
            "certificate": app.targets_panel.certificate.cget("text"),
            "carbon_time": app.carbon_time.snapshot(),
        })
        export.write_state_json(state, self.path)

    def widget_boxes(self) -> dict[str, list[int]]:
        """Screen boxes [x, y, width, height] of the mapped widgets a test may click, by name."""
        app = self.app
        app.root.update_idletasks()   # positions after any pending re-layout, so a click lands
        widgets = {f"slider_{name}": slider for name, slider in app.controls.sliders.items()}
        widgets.update({f"preset_{name.lower().replace(' ', '_')}": button
                        for name, button in app.controls.preset_buttons.items()})
        widgets["map"] = app.map_canvas.get_tk_widget()
        widgets["context_entry"] = app.controls.context
        widgets["live_radio"] = app.controls.live_radio
        widgets["model_menu"] = app.controls.model_menu
        widgets.update(app.targets_panel.widgets())
        widgets.update({f"panel_{name}": widget for name, widget in app.deploy_area.widgets().items()})
        widgets.update(app.carbon_time.widgets())
        for name, button in app.tabs._segmented_button._buttons_dict.items():  # no public accessor
            widgets[f"tab_{name.lower()}"] = button
        return {name: [widget.winfo_rootx(), widget.winfo_rooty(), widget.winfo_width(), widget.winfo_height()]
                for name, widget in widgets.items() if widget.winfo_ismapped()}

    def _pareto_screen_points(self) -> list[dict]:
        app = self.app
        widget = app.pareto_canvas.get_tk_widget()
        if app.tabs.get() != "Pareto" or not widget.winfo_ismapped():
            return []
        height = widget.winfo_height()
        return [{"x": widget.winfo_rootx() + x, "y": widget.winfo_rooty() + height - y,
                 "weights": {"carbon": w.carbon, "distance": w.distance, "vram": w.vram}}
                for x, y, w in app.pareto.display_points()]

    def _deploy_state(self) -> dict:
        app = self.app
        panel = app.deploy_area
        return {"panel": type(panel).__name__,
                "deploy_enabled": panel.deploy_button.cget("state") == "normal",
                "hint": panel.hint.cget("text"),
                **panel.snapshot(),
                "map_stages": dict(app._stage_status),
                "map": app.map.artist_counts()}


def attach(app: Any, path: str) -> StateFile:
    observer = StateFile(app, path)
    app.observers.append(observer)
    return observer
