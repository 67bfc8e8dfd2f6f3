"""The targets strip above the map (three short rows, so the map keeps the height): metric targets, a country filter and the "Exact" button.

Typed values go to the view-model unparsed (prismn_gui.targets), so a bad one comes back as a
message naming its field. Selecting countries in the list allows only those (none selected:
every country); the map dims the peers the filter rules out. "Exact" plans the next request with
the MILP once and shows how far the greedy plan is from the optimum.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable

import customtkinter as ctk

from prismn_gui.targets import TargetsRequest, certificate_text, swarm_countries

FIELDS = (("max_ms", "ms/token ≤"), ("max_g", "gCO2/1k tok ≤"), ("max_peers", "peers ≤"))


class TargetsPanel(ctk.CTkFrame):
    def __init__(self, parent, on_change: Callable[[], None]) -> None:
        super().__init__(parent)
        self._on_change = on_change
        self._exact_next = False
        self._countries: list[str] = []
        small = ctk.CTkFont(size=11)
        ctk.CTkLabel(self, text="Targets", font=ctk.CTkFont(size=13, weight="bold")).grid(
            row=0, column=0, rowspan=2, padx=(8, 6), sticky="n", pady=(4, 0))
        self.entries: dict[str, ctk.CTkEntry] = {}
        for col, (name, title) in enumerate(FIELDS, start=1):
            ctk.CTkLabel(self, text=title, font=small, anchor="w", height=16).grid(row=0, column=col, sticky="w",
                                                                                padx=3, pady=(2, 0))
            entry = ctk.CTkEntry(self, width=60, height=26, font=small, placeholder_text="none")
            entry.grid(row=1, column=col, sticky="w", padx=3, pady=(0, 2))
            entry.bind("<Return>", lambda _e: self._changed())
            entry.bind("<FocusOut>", lambda _e: self._changed())
            self.entries[name] = entry
        ctk.CTkLabel(self, text="countries (none: all)", font=small, anchor="w", height=16).grid(
            row=0, column=4, sticky="w", padx=(10, 3), pady=(2, 0))
        box = tk.Frame(self)
        box.grid(row=1, column=4, sticky="w", padx=(10, 3), pady=(0, 2))
        self.country_list = tk.Listbox(box, selectmode="multiple", height=2, width=7,
                                       exportselection=False, font=("TkDefaultFont", 9))
        scroll = tk.Scrollbar(box, orient="vertical", command=self.country_list.yview)
        self.country_list.configure(yscrollcommand=scroll.set)
        self.country_list.pack(side="left")
        scroll.pack(side="left", fill="y")
        self.country_list.bind("<<ListboxSelect>>", lambda _e: self._changed())
        self.exact_button = ctk.CTkButton(self, text="Exact", width=56, height=26, font=small, command=self._exact)
        self.exact_button.grid(row=1, column=5, sticky="w", padx=(8, 6), pady=(0, 2))
        # One short line under the fields: the certificate of the last "Exact" (empty otherwise).
        self.certificate = ctk.CTkLabel(self, text="", font=ctk.CTkFont(size=11, weight="bold"), height=14,
                                        anchor="w", justify="left", text_color=("#1a7f37", "#3fb950"))
        self.certificate.grid(row=2, column=0, columnspan=6, sticky="w", padx=8, pady=(0, 2))

    def request(self) -> TargetsRequest:
        """The fields as typed; "Exact" applies to one request only."""
        exact, self._exact_next = self._exact_next, False
        chosen = tuple(self._countries[i] for i in self.country_list.curselection())
        return TargetsRequest(max_ms_text=self.entries["max_ms"].get(),
                              max_g_text=self.entries["max_g"].get(),
                              max_peers_text=self.entries["max_peers"].get(),
                              allow_countries=chosen, exact=exact)

    def show(self, outcome) -> None:
        """Refresh the country list for the swarm shown (keeping the selection) and the certificate."""
        countries = swarm_countries(outcome.peers)
        if countries and countries != self._countries:
            chosen = {self._countries[i] for i in self.country_list.curselection()}
            self._countries = countries
            self.country_list.delete(0, "end")
            for i, code in enumerate(countries):
                self.country_list.insert("end", code)
                if code in chosen:
                    self.country_list.selection_set(i)
        text = ""
        if outcome.request.targets.exact and outcome.error is None:
            text = certificate_text(outcome.carbon_plan) or "Exact: no plan meets the targets"
        self.certificate.configure(text=text)
        self.exact_button.configure(state="normal")

    def select_countries(self, codes: list[str]) -> None:
        """Select these countries in the list (for tests and scripted screenshots)."""
        for i, code in enumerate(self._countries):
            if code in codes:
                self.country_list.selection_set(i)
        self._changed()

    def widgets(self) -> dict[str, object]:
        return {**{f"target_{name}": entry for name, entry in self.entries.items()},
                "target_countries": self.country_list, "target_exact": self.exact_button}

    def _changed(self) -> None:
        self.certificate.configure(text="")
        self._on_change()

    def _exact(self) -> None:
        self._exact_next = True
        self.exact_button.configure(state="disabled")
        self.certificate.configure(text="Solving the MILP (up to 10 s)…")
        self._on_change()
