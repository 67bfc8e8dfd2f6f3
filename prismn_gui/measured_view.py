"""Measured beside estimated: one row per deployed plan (VRAM baseline, carbon+distance).

After a generation on the live swarm, the row of the plan that ran shows time to first token,
decode ms/token (estimate → measured), tokens/s and gCO2 (estimate → measured), with how the energy
was measured ("estimated" when it comes from the CPU-time power model, not a counter).
"""

from __future__ import annotations

from typing import Any

import customtkinter as ctk

from engine.plan import Plan

PLAN_ROWS = {"vram": "VRAM baseline", "carbon": "Carbon+dist."}
COLUMNS = ("Measured", "TTFT s", "ms/token est → meas.", "tokens/s", "gCO2 est → meas.")


def measured_cells(plan: Plan, result: dict[str, Any]) -> tuple[str, str, str, str]:
    """(TTFT, ms/token, tokens/s, gCO2) texts for one generation of `plan`."""
    measured = result.get("measured") or {}
    tokens = len(result.get("token_ids") or ())
    est_ms = plan.metrics.est_ms_per_token if plan.metrics else None
    est_g = plan.metrics.g_co2_per_1k_tokens * tokens / 1000.0 if plan.metrics else None
    ttft = measured.get("ttft_s")
    ms = measured.get("decode_ms_per_token")
    rate = measured.get("tokens_per_s")
    grams = measured.get("g_co2")
    label = "*" if measured.get("estimated") else ""
    return (_num(ttft, "{:.2f}"),
            f"{_num(est_ms, '{:.1f}')} → {_num(ms, '{:.1f}')}",
            _num(rate, "{:.1f}"),
            f"{_num(est_g, '{:.3g}')} → {_num(grams, '{:.3g}')}{label}")


def energy_note(result: dict[str, Any]) -> str:
    """How the energy was measured, and the network's share of a decode step (wall − stage compute)."""
    measured = result.get("measured") or {}
    method = measured.get("energy_method") or "unknown"
    network = measured.get("network_ms_per_token")
    return (f"energy: {method}" + (" (* not a hardware counter)" if measured.get("estimated") else "")
            + (f" · network {network:.1f} ms/token" if network is not None else ""))


def _num(value: float | None, pattern: str) -> str:
    return "—" if value is None else pattern.format(value)


class MeasuredTable(ctk.CTkFrame):
    def __init__(self, parent: Any) -> None:
        super().__init__(parent, fg_color="transparent")
        small = ctk.CTkFont(size=11)
        bold = ctk.CTkFont(size=11, weight="bold")
        for col, weight in enumerate((3, 2, 4, 2, 4)):
            self.grid_columnconfigure(col, weight=weight)
        for col, title in enumerate(COLUMNS):
            ctk.CTkLabel(self, text=title, font=bold, anchor="e" if col else "w").grid(row=0, column=col,
                                                                                     sticky="ew", padx=2)
        self.cells: dict[str, tuple[ctk.CTkLabel, ...]] = {}
        for row, (key, title) in enumerate(PLAN_ROWS.items(), start=1):
            ctk.CTkLabel(self, text=title, font=small, anchor="w").grid(row=row, column=0, sticky="ew", padx=2)
            cells = tuple(ctk.CTkLabel(self, text="—", font=small, anchor="e") for _ in range(4))
            for col, cell in enumerate(cells, start=1):
                cell.grid(row=row, column=col, sticky="ew", padx=2)
            self.cells[key] = cells
        self.note = ctk.CTkLabel(self, text="Deploy and generate to measure.", font=small, anchor="w",
                                 text_color="gray55")
        self.note.grid(row=3, column=0, columnspan=5, sticky="ew", padx=2)
        self.shown: dict[str, tuple[str, ...]] = {}

    def show(self, policy: str, plan: Plan, result: dict[str, Any]) -> None:
        key = "vram" if policy == "vram" else "carbon"
        texts = measured_cells(plan, result)
        for cell, text in zip(self.cells[key], texts, strict=True):
            cell.configure(text=text)
        self.shown[key] = texts
        self.note.configure(text=energy_note(result))
