"""The runners panel under Xvfb: lists the live runners, deploys with per-stage progress bars, and
streams a generation into its text box with tokens/s and gCO2 (two tiny-Llama runner processes)."""

from __future__ import annotations

import gc
import os
from functools import partial

import pytest

from engine.coordinator.embedded import EmbeddedCoordinator
from engine.coordinator.local_runners import runner_vram_gb
from engine.model import footprint, load_spec
from engine.paths import REPO_ROOT
from engine.planning.planner import make_plan
from engine.planning.types import Ingress, Policy, Weights
from tests.conftest import poll
from tests.engine.coordinator.conftest import spawn_runner

pytestmark = [pytest.mark.timeout(180), pytest.mark.gui]
INGRESS = Ingress(lat=50.11, lon=8.68)
SCREENSHOT = REPO_ROOT / "artifacts" / "screenshots" / "runners_panel.png"


def test_the_panel_shows_runners_deploys_with_progress_and_streams_a_generation(
        display, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("DISPLAY", display)      # the in-process Tk below opens it
    import customtkinter as ctk

    from prismn_gui.deploy_area import AppContext
    from prismn_gui.runners_panel import STATUS_COLOURS, RunnersPanel

    coordinator = EmbeddedCoordinator(f"sqlite:{tmp_path}/prismn.sqlite3", transport="tcp", bind_host="127.0.0.1",
                                      model_source=str(tiny_model), api_bind="127.0.0.1:0")
    coordinator.start()
    processes = [spawn_runner(coordinator.ticket, peer_id, lat, lon, runner_vram_gb(str(tiny_model)), tmp_path)
                 for peer_id, lat, lon in (("lyon", 45.76, 4.84), ("turin", 45.07, 7.69))]
    root = ctk.CTk()
    root.geometry("760x520")
    plan_box = []
    panel = RunnersPanel(root, AppContext(root=root, current_plan=lambda: plan_box[0] if plan_box else None,
                                          coordinator=coordinator))
    panel.pack(fill="both", expand=True)
    pump = partial(poll, every_s=0.02, before_each=root.update)     # the window keeps working meanwhile
    try:
        assert panel.deploy_button.cget("state") == "normal"
        assert panel.ticket_entry.get() == coordinator.ticket
        pump(lambda: len(panel._peer_rows_shown) == 2, 60, "two runners listed")
        listed = panel.peer_list.get("1.0", "end")
        assert "lyon" in listed and "turin" in listed
        dots = panel.peer_list.tag_ranges("live")
        assert len(dots) == 4                                   # two "● " runs in the live colour
        assert panel.peer_list.tag_cget("live", "foreground") == STATUS_COLOURS["live"]

        fp = footprint(load_spec(str(tiny_model)))
        plan = make_plan(fp, coordinator.swarm(INGRESS).peers, INGRESS, Policy.CARBON, Weights())
        assert len(plan.stages) == 2
        plan_box.append(plan)
        panel.deploy_button.invoke()
        pump(lambda: "Deployed" in panel.hint.cget("text"), 90, "the deployment")
        assert set(panel._stage_rows) == {s.peer_id for s in plan.stages}
        assert all(bar.get() == 1.0 for _label, bar in panel._stage_rows.values())

        panel.prompt_entry.insert(0, "Hello runners")
        panel.generate_button.invoke()
        pump(lambda: panel.last_result is not None, 60, "the generation")
        assert panel.output.get("1.0", "end-1c") == panel.last_result["text"]
        assert "tokens/s" in panel.stats.cget("text") and "gCO2" in panel.stats.cget("text")
        # the API address is shown once deployed, with a copy button
        assert coordinator.api_url and panel.serving.api_entry.get() == coordinator.api_url
        assert panel.serving.copy_api_button.cget("state") == "normal"

        # temperature and max tokens go to the same decoding path
        for entry, value in ((panel.serving.max_tokens_entry, "5"), (panel.serving.temperature_entry, "0.9")):
            entry.delete(0, "end")
            entry.insert(0, value)
        panel.last_result = None
        panel.generate_button.invoke()
        pump(lambda: panel.last_result is not None, 60, "the sampled generation")
        assert len(panel.last_result["token_ids"]) == 5
        panel.serving.temperature_entry.delete(0, "end")
        panel.serving.temperature_entry.insert(0, "-1")
        panel.generate_button.invoke()
        pump(lambda: "temperature" in panel.stats.cget("text"), 10, "the refusal naming temperature")
        assert "failed" in panel.stats.cget("text")
        pump(lambda: all(p[5] == "ready" for p in panel._peer_rows_shown), 5, "ready colours")
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        root.update()
        os.system(f"import -window root -display {display} {SCREENSHOT} 2>/dev/null")
    finally:
        root.destroy()
        # Finalise Tk objects here, on the Tk thread, not in whatever thread collects them next.
        panel = root = None  # noqa: F841 - drop the last references before collecting
        gc.collect()
        for process in processes:
            process.kill()
            process.wait(10)
        coordinator.stop()
