"""The left panel: model, quantisation, context, ingress, weight sliders and presets, swarm source.

It only collects what the person chose; `request()` hands it to the view-model unparsed, so a
bad field comes back as a message naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from tkinter import filedialog

import customtkinter as ctk

from engine.planning.types import Weights
from prismn_gui.carbon_signals import add_signal_toggle
from prismn_gui.cities import CITY_NAMES, CUSTOM
from prismn_gui.viewmodel import QUANTS, SWARM_INGRESS, WEIGHT_PRESETS, PlanRequest

OPEN_CONFIG = "Open config.json…"
LIVE_HINT_OFF = "Live peers: start the coordinator first (Runners, below the map)."
LIVE_HINT_ON = "Live peers: {count} runner(s) joined the coordinator."


class Controls(ctk.CTkFrame):
    def __init__(self, parent, presets: list[str], default_model: str, initial_weights: Weights,
                 on_change: Callable[[], None], initial_swarm_path: str = "") -> None:
        super().__init__(parent, width=236)
        self._on_change = on_change
        self._models = list(presets)
        self._model = default_model
        self._swarm_file = initial_swarm_path
        self.live_key: tuple = ()          # the live peer ids, kept current by the app
        small = ctk.CTkFont(size=12)
        bold = ctk.CTkFont(size=13, weight="bold")
        self.grid_columnconfigure(0, weight=1)
        row = _Rows(self)

        row.add(ctk.CTkLabel(self, text="Model", font=bold, anchor="w"))
        self.model_menu = ctk.CTkOptionMenu(self, values=self._models + [OPEN_CONFIG],
                                            command=self._model_chosen, font=small)
        self.model_menu.set(default_model)
        row.add(self.model_menu)

        row.add(ctk.CTkLabel(self, text="Quantisation", font=small, anchor="w"), pady=(6, 0))
        self.quant = ctk.CTkSegmentedButton(self, values=list(QUANTS), command=lambda _v: self._changed(),
                                            font=small)
        self.quant.set("bf16")
        row.add(self.quant)

        row.add(ctk.CTkLabel(self, text="Context length (tokens)", font=small, anchor="w"), pady=(6, 0))
        self.context = ctk.CTkEntry(self, font=small)
        self.context.insert(0, "4096")
        self.context.bind("<Return>", lambda _e: self._changed())
        self.context.bind("<FocusOut>", lambda _e: self._changed())
        row.add(self.context)

        row.add(ctk.CTkLabel(self, text="Ingress", font=bold, anchor="w"), pady=(10, 0))
        self.ingress_menu = ctk.CTkOptionMenu(self, values=[SWARM_INGRESS, *CITY_NAMES, CUSTOM],
                                              command=self._ingress_chosen, font=small)
        self.ingress_menu.set(SWARM_INGRESS)
        row.add(self.ingress_menu)
        latlon = ctk.CTkFrame(self, fg_color="transparent")
        self.lat = ctk.CTkEntry(latlon, placeholder_text="lat", width=100, font=small)
        self.lon = ctk.CTkEntry(latlon, placeholder_text="lon", width=100, font=small)
        self.lat.pack(side="left", padx=(0, 4))
        self.lon.pack(side="left")
        for entry in (self.lat, self.lon):
            entry.bind("<Return>", lambda _e: self._changed())
            entry.bind("<FocusOut>", lambda _e: self._changed())
        row.add(latlon)

        row.add(ctk.CTkLabel(self, text="Weights", font=bold, anchor="w"), pady=(10, 0))
        self.sliders: dict[str, ctk.CTkSlider] = {}
        self._slider_labels: dict[str, ctk.CTkLabel] = {}
        for name in ("carbon", "distance", "vram"):
            label = ctk.CTkLabel(self, text="", font=small, anchor="w")
            row.add(label, pady=(2, 0))
            slider = ctk.CTkSlider(self, from_=0.0, to=1.0, number_of_steps=100,
                                   command=lambda _v: self._weights_moved())
            row.add(slider)
            self.sliders[name] = slider
            self._slider_labels[name] = label
        presets_row = ctk.CTkFrame(self, fg_color="transparent")
        self.preset_buttons: dict[str, ctk.CTkButton] = {}
        for name in WEIGHT_PRESETS:
            button = ctk.CTkButton(presets_row, text=name, width=70, font=ctk.CTkFont(size=11),
                                   command=lambda n=name: self.set_weights(WEIGHT_PRESETS[n], notify=True))
            button.pack(side="left", padx=(0, 3))
            self.preset_buttons[name] = button
        row.add(presets_row, pady=(6, 0))
        self.signal = add_signal_toggle(self, row, on_change=self._changed)

        row.add(ctk.CTkLabel(self, text="Swarm", font=bold, anchor="w"), pady=(10, 0))
        self.swarm_var = ctk.StringVar(value="file" if initial_swarm_path else "demo")
        self.demo_radio = ctk.CTkRadioButton(self, text="Demo swarm", variable=self.swarm_var, value="demo",
                                             command=self._changed, font=small)
        row.add(self.demo_radio)
        self.file_radio = ctk.CTkRadioButton(self, text="Peers JSON file", variable=self.swarm_var,
                                             value="file", command=self._file_radio, font=small)
        row.add(self.file_radio, pady=(4, 0))
        self.open_peers = ctk.CTkButton(self, text="Open peers JSON…", command=self._open_peers, font=small,
                                        height=24)
        row.add(self.open_peers, pady=(2, 0))
        self.live_radio = ctk.CTkRadioButton(self, text="Live peers (coordinator)", variable=self.swarm_var,
                                             value="live", state="disabled", command=self._changed,
                                             font=small)
        row.add(self.live_radio, pady=(4, 0))
        self.live_hint = ctk.CTkLabel(self, text=LIVE_HINT_OFF, font=ctk.CTkFont(size=10), text_color="gray55",
                                      anchor="w", wraplength=210, justify="left")
        row.add(self.live_hint)
        self.swarm_label = ctk.CTkLabel(self, text=self._swarm_text(), font=ctk.CTkFont(size=10),
                                        anchor="w", wraplength=210, justify="left")
        row.add(self.swarm_label)
        self.set_weights(initial_weights, notify=False)

    # ---- what the person chose --------------------------------------------------------------

    def request(self, request_id: int) -> PlanRequest:
        return PlanRequest(
            model=self._model,
            quant=self.quant.get(),
            context_text=self.context.get(),
            ingress_choice=self.ingress_menu.get(),
            lat_text=self.lat.get(),
            lon_text=self.lon.get(),
            weights=self.weights(),
            swarm_path=self._swarm_file if self.swarm_var.get() == "file" else "",
            request_id=request_id,
            live=self.swarm_var.get() == "live",
            live_key=self.live_key if self.swarm_var.get() == "live" else (),
            signal=self.signal.get(),
        )

    def live_selected(self) -> bool:
        return self.swarm_var.get() == "live"

    def set_live_available(self, available: bool, peer_count: int = 0) -> None:
        """Enable "Live peers" while a coordinator runs; without one, fall back to the demo swarm."""
        self.live_radio.configure(state="normal" if available else "disabled")
        self.live_hint.configure(text=LIVE_HINT_ON.format(count=peer_count) if available else LIVE_HINT_OFF)
        if not available and self.live_selected():
            self.swarm_var.set("file" if self._swarm_file else "demo")
            self._changed()

    def select_live(self) -> None:
        """Plan over the live peers (no notification: the caller asks for the plan)."""
        if self.live_radio.cget("state") == "normal":
            self.swarm_var.set("live")

    def set_model(self, name: str) -> None:
        """Pick `name` in the model menu (no notification: the caller asks for the plan)."""
        if name not in self._models:
            self._models.append(name)
            self.model_menu.configure(values=self._models + [OPEN_CONFIG])
        self._model = name
        self.model_menu.set(name)

    @property
    def model(self) -> str:
        return self._model

    def weights(self) -> Weights:
        return Weights(carbon=round(self.sliders["carbon"].get(), 4),
                       distance=round(self.sliders["distance"].get(), 4),
                       vram=round(self.sliders["vram"].get(), 4))

    def set_weights(self, weights: Weights, notify: bool) -> None:
        for name in ("carbon", "distance", "vram"):
            self.sliders[name].set(getattr(weights, name))
        self._update_slider_labels()
        if notify:
            self._changed()

    # ---- reactions ------------------------------------------------------------------------

    def _changed(self) -> None:
        self._on_change()

    def _weights_moved(self) -> None:
        self._update_slider_labels()
        self._changed()

    def _update_slider_labels(self) -> None:
        normalised = self.weights().normalised()
        titles = {"carbon": "Carbon", "distance": "Distance", "vram": "Free VRAM"}
        for name, label in self._slider_labels.items():
            label.configure(text=f"{titles[name]}: {getattr(normalised, name):.0%}")

    def _model_chosen(self, value: str) -> None:
        if value == OPEN_CONFIG:
            path = filedialog.askopenfilename(title="Open a Hugging Face config.json",
                                              filetypes=[("JSON", "*.json"), ("All files", "*")])
            if not path:
                self.model_menu.set(self._model)
                return
            if path not in self._models:
                self._models.append(path)
                self.model_menu.configure(values=self._models + [OPEN_CONFIG])
            value = path
            self.model_menu.set(path)
        self._model = value
        self._changed()

    def _ingress_chosen(self, _value: str) -> None:
        self._changed()

    def _file_radio(self) -> None:
        if not self._swarm_file:
            self._open_peers()
        else:
            self._changed()

    def _open_peers(self) -> None:
        path = filedialog.askopenfilename(title="Open a peers JSON file",
                                          filetypes=[("JSON", "*.json"), ("All files", "*")])
        if path:
            self._swarm_file = path
            self.swarm_var.set("file")
        elif not self._swarm_file:
            self.swarm_var.set("demo")
        self.swarm_label.configure(text=self._swarm_text())
        self._changed()

    def _swarm_text(self) -> str:
        return f"File: {self._swarm_file}" if self._swarm_file else ""


class _Rows:
    """Stacks widgets in one column of a grid, with the same horizontal padding."""

    def __init__(self, frame) -> None:
        self._frame = frame
        self._row = 0

    def add(self, widget, pady=(2, 0)) -> None:
        widget.grid(row=self._row, column=0, sticky="ew", padx=10, pady=pady)
        self._row += 1
