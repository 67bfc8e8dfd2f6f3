"""Which model "Start local runners" loads: the bundled SmolLM2, or a local Hugging Face folder.

A folder (config.json + *.safetensors of an architecture the runners execute) is checked when it is
chosen, so a model the runners cannot execute is refused here, naming its model_type, and never
half-way through a deployment. Deploy then tells the runners to load that folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from tkinter import filedialog
from typing import Any

import customtkinter as ctk

from engine.errors import InvalidInput
from engine.model.source import check_model_folder

BUNDLED = "Bundled SmolLM2"
MODEL_FOLDER = "Model folder…"


class LocalModelMenu(ctk.CTkOptionMenu):
    """`folder`: the chosen folder, or None for the bundled SmolLM2."""

    def __init__(self, master: Any, on_message: Callable[[str], None], **kwargs: Any) -> None:
        super().__init__(master, values=[BUNDLED, MODEL_FOLDER], command=self._picked, width=128, **kwargs)
        self._on_message = on_message
        self.folder: Path | None = None
        self.set(BUNDLED)

    def choose(self, folder: str | Path) -> bool:
        """Use `folder` for local runners if the runners can execute it; else say why and keep the last."""
        try:
            source = check_model_folder(folder)
        except InvalidInput as exc:
            self._on_message(f"Model folder refused: {exc}")
            self.set(self.folder.name if self.folder else BUNDLED)
            return False
        self.folder = source.folder
        self.configure(values=[BUNDLED, source.folder.name, MODEL_FOLDER])
        self.set(source.folder.name)
        self._on_message(f"Local runners will load {source.folder} ({source.config().get('model_type')}).")
        return True

    def model_for(self, plan_model_name: str) -> str | None:
        """What runners load for a plan of `plan_model_name`: the chosen folder when the plan is of it
        (a folder's plan is named after the folder), else None (the plan's own model name)."""
        if self.folder is not None and plan_model_name in (self.folder.name, str(self.folder)):
            return str(self.folder)
        return None

    def _picked(self, value: str) -> None:
        if value == MODEL_FOLDER:
            path = filedialog.askdirectory(title="A Hugging Face model folder (config.json + safetensors)")
            if path:
                self.choose(path)
            else:
                self.set(self.folder.name if self.folder else BUNDLED)
        elif value == BUNDLED:
            self.folder = None
