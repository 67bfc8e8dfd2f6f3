"""Prompt-box controls for serving: temperature and max tokens for the next generation, and the
OpenAI-compatible API's address with a copy button once a model is deployed.

The values go through engine.decoding's checks, so a bad entry is reported as the engine names it
("temperature=-1: expected a number in [0, 2]") instead of being silently clamped.
"""

from __future__ import annotations

from typing import Any

import customtkinter as ctk

from engine.decoding import Sampling, check_max_tokens

DEFAULT_TEMPERATURE = 0.0          # greedy: the pipeline's answer equals the whole model's
DEFAULT_MAX_TOKENS = 64
APP_API_PORT = 8000


def app_api_bind() -> str:
    """Loopback port 8000 (a stable address to paste into tools); the coordinator takes any free port
    when 8000 is taken."""
    return f"127.0.0.1:{APP_API_PORT}"


class ServingControls:
    """Two small pieces placed in rows the panel already has (its height must not grow): the sampling
    entries beside Generate, the API address with its copy button at the right of the stats line."""

    def __init__(self, prompt_row: Any, stats_row: Any, font: Any = None) -> None:
        sampling = ctk.CTkFrame(prompt_row, fg_color="transparent")
        sampling.pack(side="left", padx=(6, 0))
        ctk.CTkLabel(sampling, text="temp", font=font).pack(side="left")
        self.temperature_entry = ctk.CTkEntry(sampling, width=40, font=font)
        self.temperature_entry.insert(0, f"{DEFAULT_TEMPERATURE:g}")
        self.temperature_entry.pack(side="left", padx=(2, 6))
        ctk.CTkLabel(sampling, text="max", font=font).pack(side="left")
        self.max_tokens_entry = ctk.CTkEntry(sampling, width=46, font=font)
        self.max_tokens_entry.insert(0, str(DEFAULT_MAX_TOKENS))
        self.max_tokens_entry.pack(side="left", padx=(2, 0))

        api = ctk.CTkFrame(stats_row, fg_color="transparent")
        api.pack(side="right")
        self.copy_api_button = ctk.CTkButton(api, text="Copy API", width=70, height=24, state="disabled",
                                             command=self._copy)
        self.copy_api_button.pack(side="right")
        self.api_entry = ctk.CTkEntry(api, width=190, height=24, font=font,
                                      placeholder_text="API: once a model is deployed")
        self.api_entry.pack(side="right", padx=(0, 4))
        self.api_entry.configure(state="readonly")

    def sampling(self) -> Sampling:
        """The temperature entry as engine.decoding.Sampling (InvalidInput naming `temperature`)."""
        text = self.temperature_entry.get().strip()
        try:
            value: Any = float(text)
        except ValueError:
            value = text
        return Sampling.create(temperature=value)

    def max_tokens(self) -> int:
        text = self.max_tokens_entry.get().strip()
        return check_max_tokens(int(text) if text.lstrip("-").isdigit() else text)

    def show_api(self, url: str | None) -> None:
        self.api_entry.configure(state="normal")
        self.api_entry.delete(0, "end")
        if url:
            self.api_entry.insert(0, url)
        self.api_entry.configure(state="readonly")
        self.copy_api_button.configure(state="normal" if url else "disabled")

    def _copy(self) -> None:
        url = self.api_entry.get()
        if url:
            self.api_entry.clipboard_clear()
            self.api_entry.clipboard_append(url)
