""""Model folder…" for local runners: a local HF folder of a tiny random Gemma (config + safetensors +
a byte tokenizer) is started on local runner processes from the runners panel, deploys and answers
with the monolithic model's greedy tokens; a folder the runners cannot execute is refused when it is
chosen, naming its model_type."""

from __future__ import annotations

import gc
import json
import os
import shutil
from functools import partial

import pytest

from engine.coordinator.embedded import EmbeddedCoordinator
from engine.model import footprint, load_spec
from engine.paths import REPO_ROOT
from engine.planning.planner import make_plan
from engine.planning.types import Ingress, Policy, Weights
from tests.conftest import poll
from tests.engine.coordinator.conftest import greedy_monolithic, save_byte_tokenizer
from tests.engine.runner.conftest import save_tiny

pytestmark = [pytest.mark.timeout(240), pytest.mark.gui, pytest.mark.slow]
INGRESS = Ingress(lat=50.11, lon=8.68)
SCREENSHOT = REPO_ROOT / "artifacts" / "screenshots" / "local_model_folder.png"
PROMPT = "Hello Gemma"


def test_a_gemma_folder_deploys_on_local_runners_and_answers(display, tmp_path, monkeypatch):
    monkeypatch.setenv("DISPLAY", display)      # the in-process Tk below opens it
    import customtkinter as ctk

    from prismn_gui.deploy_area import AppContext
    from prismn_gui.runners_panel import RunnersPanel

    folder = save_tiny(tmp_path / "tiny-gemma", "gemma")
    save_byte_tokenizer(folder)
    refused = tmp_path / "tiny-gpt2"
    shutil.copytree(folder, refused)
    (refused / "config.json").write_text(json.dumps({**json.loads((folder / "config.json").read_text()),
                                                     "model_type": "gpt2"}))

    coordinator = EmbeddedCoordinator(f"sqlite:{tmp_path}/prismn.sqlite3", transport="tcp", bind_host="127.0.0.1")
    coordinator.start()
    root = ctk.CTk()
    root.geometry("760x520")
    plan_box = []
    panel = RunnersPanel(root, AppContext(root=root, current_plan=lambda: plan_box[0] if plan_box else None,
                                          coordinator=coordinator))
    panel.pack(fill="both", expand=True)
    pump = partial(poll, every_s=0.02, before_each=root.update)     # the window keeps working meanwhile
    try:
        assert not panel.local_model.choose(refused)
        assert "model_type='gpt2'" in panel.hint.cget("text") and "runners cannot execute" in panel.hint.cget("text")
        assert panel.local_model.folder is None

        assert panel.local_model.choose(folder)
        assert panel.local_model.get() == "tiny-gemma"
        panel.runner_count.set("2")
        panel.local_button.invoke()
        pump(lambda: len(coordinator.live_peers()) == 2, 90, "two local runners joined")

        # What the app plans once local runners start: the folder at its default quantisation (bf16),
        # over the live (CPU) runners.
        fp = footprint(load_spec(str(folder)), "bf16", device_kind="cpu")
        plan = make_plan(fp, coordinator.swarm(INGRESS).peers, INGRESS, Policy.CARBON, Weights())
        assert plan.feasible and len(plan.stages) == 2 and plan.model.name == "tiny-gemma"
        plan_box.append(plan)
        panel.deploy_button.invoke()
        pump(lambda: "Deployed" in panel.hint.cget("text"), 120, "the deployment")

        panel.prompt_entry.insert(0, PROMPT)
        panel.generate_button.invoke()
        pump(lambda: panel.last_result is not None, 90, "the generation")
        assert panel.output.get("1.0", "end-1c") == panel.last_result["text"]
        result = panel.last_result
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        root.update()
        os.system(f"import -window root -display {display} {SCREENSHOT} 2>/dev/null")
    finally:
        root.destroy()
        panel = root = None  # noqa: F841 - drop the last references before collecting
        gc.collect()
        coordinator.stop()
    # The answer is the whole Gemma's greedy continuation of the same prompt ids (raw text: the byte
    # tokenizer has no chat template), token for token, with its weights in bf16 as deployed.
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(str(folder))(PROMPT)["input_ids"]
    assert result["token_ids"] and result["token_ids"] == greedy_monolithic(folder, ids, len(result["token_ids"]), "bf16")
