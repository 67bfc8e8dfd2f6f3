"""The right panel: both plans side by side with the difference in %, and the per-stage table."""

from __future__ import annotations

from collections.abc import Callable
from tkinter import font as tkfont
from tkinter import ttk

import customtkinter as ctk

from engine.plan_text import COMPARISON_LABELS
from prismn_gui.measured_view import MeasuredTable
from prismn_gui.viewmodel import PlanOutcome

PLAN_TABS = {"Carbon + distance": "carbon", "VRAM baseline": "vram"}
STAGE_COLUMNS = (("#", 16), ("Peer", 104), ("GPU", 40), ("Layers", 70), ("VRAM GB used/free", 54),
                 ("gCO2/kWh · signal", 100), ("Compute ms est/meas", 64))
CELL_PAD_PX = 8
TABLE_FONT = ("TkDefaultFont", 8)
HEADINGS = {"VRAM GB used/free": "VRAM", "gCO2/kWh · signal": "g/kWh · signal", "Compute ms est/meas": "ms e/m"}
ROWS = COMPARISON_LABELS


class ComparisonPanel(ctk.CTkFrame):
    def __init__(self, parent, on_export_plan: Callable[[], None], on_export_map: Callable[[], None]) -> None:
        super().__init__(parent, width=480)
        self._outcome: PlanOutcome | None = None
        small = ctk.CTkFont(size=12)
        bold = ctk.CTkFont(size=12, weight="bold")
        self.grid_columnconfigure(0, weight=1)

        ctk.CTkLabel(self, text="Plans compared", font=ctk.CTkFont(size=14, weight="bold"),
                     anchor="w").grid(row=0, column=0, sticky="ew", padx=10, pady=(8, 2))
        self.message = ctk.CTkLabel(self, text="Planning…", font=small, anchor="w", justify="left",
                                    wraplength=430)
        self.message.grid(row=1, column=0, sticky="ew", padx=10)

        table = ctk.CTkFrame(self, fg_color="transparent")
        table.grid(row=2, column=0, sticky="ew", padx=10, pady=(6, 4))
        for col, weight in enumerate((3, 2, 2, 2)):
            table.grid_columnconfigure(col, weight=weight)
        for col, title in enumerate(("", "VRAM baseline", "Carbon+dist.", "Δ %")):
            ctk.CTkLabel(table, text=title, font=bold, anchor="e" if col else "w").grid(
                row=0, column=col, sticky="ew", padx=2)
        self._cells: dict[str, tuple[ctk.CTkLabel, ctk.CTkLabel, ctk.CTkLabel]] = {}
        for r, label in enumerate(ROWS, start=1):
            ctk.CTkLabel(table, text=label, font=small, anchor="w").grid(row=r, column=0, sticky="ew", padx=2)
            cells = tuple(ctk.CTkLabel(table, text="—", font=small, anchor="e") for _ in range(3))
            for col, cell in enumerate(cells, start=1):
                cell.grid(row=r, column=col, sticky="ew", padx=2)
            self._cells[label] = cells  # type: ignore[assignment]

        self.measured = MeasuredTable(self)
        self.measured.grid(row=3, column=0, sticky="ew", padx=10, pady=(0, 4))
        self._measured_runs: dict[str, tuple] = {}        # policy -> (plan, result) of the last generation
        ctk.CTkLabel(self, text="Stages", font=ctk.CTkFont(size=14, weight="bold"), anchor="w").grid(
            row=4, column=0, sticky="ew", padx=10, pady=(8, 0))
        self.plan_choice = ctk.CTkSegmentedButton(self, values=list(PLAN_TABS), command=lambda _v: self._fill_stages(),
                                                  font=small)
        self.plan_choice.set("Carbon + distance")
        self.plan_choice.grid(row=5, column=0, sticky="ew", padx=10, pady=(2, 4))

        _style_treeview()
        self.tree = ttk.Treeview(self, columns=[c for c, _ in STAGE_COLUMNS], show="headings", height=9,
                                 style="Prismn.Treeview")
        for name, width in STAGE_COLUMNS:
            self.tree.heading(name, text=HEADINGS.get(name, name))
            self.tree.column(name, width=width, minwidth=20, stretch=name == "Peer", anchor="w")
        self.tree.grid(row=6, column=0, sticky="nsew", padx=10)
        self.grid_rowconfigure(6, weight=1)

        buttons = ctk.CTkFrame(self, fg_color="transparent")
        buttons.grid(row=7, column=0, sticky="ew", padx=10, pady=8)
        self.export_plan_button = ctk.CTkButton(buttons, text="Export plan JSON…", command=on_export_plan,
                                                font=small, width=140)
        self.export_plan_button.pack(side="left", padx=(0, 6))
        self.export_map_button = ctk.CTkButton(buttons, text="Export map PNG…", command=on_export_map,
                                               font=small, width=140)
        self.export_map_button.pack(side="left")
        ctk.CTkLabel(buttons, text="ms: m = timed by the runner,\nt = GPU table; then measured", font=ctk.CTkFont(size=10),
                     text_color="gray55", justify="left").pack(side="left", padx=(8, 0))

    def show(self, outcome: PlanOutcome) -> None:
        self._outcome = outcome
        if outcome.error:
            self.message.configure(text=f"⚠ {outcome.error}", text_color="#e5484d")
            for cells in self._cells.values():
                for cell in cells:
                    cell.configure(text="—")
            self.tree.delete(*self.tree.get_children())
            return
        if outcome.notices:
            self.message.configure(text="\n".join(outcome.notices), text_color="#e5484d")
        else:
            self.message.configure(
                text=f"{len(outcome.peers)} peers · planned in {outcome.compute_ms:.1f} ms",
                text_color=("gray20", "gray80"))
        for row in outcome.comparison:
            if row.label in self._cells:
                vram_cell, carbon_cell, diff_cell = self._cells[row.label]
                vram_cell.configure(text=row.vram)
                carbon_cell.configure(text=row.carbon)
                diff_cell.configure(text=row.diff)
        self._fill_stages()

    def show_measured(self, policy: str, plan, result: dict) -> None:
        """A generation on the live swarm ended: its row in the measured table, its stages' times."""
        self.measured.show(policy, plan, result)
        self._measured_runs["vram" if policy == "vram" else "carbon"] = (plan, result)
        self._fill_stages()

    def selected_plan_key(self) -> str:
        return PLAN_TABS[self.plan_choice.get()]

    def _fill_stages(self) -> None:
        self.tree.delete(*self.tree.get_children())
        if self._outcome is None or self._outcome.error:
            return
        run = self._measured_runs.get(self.selected_plan_key())
        measured_ms: dict[str, float] = {}
        if run is not None:
            plan, result = run
            times = (result.get("measured") or {}).get("stage_compute_ms") or []
            measured_ms = {s.peer_id: ms for s, ms in zip(plan.stages, times, strict=False) if ms is not None}
        for row in self._outcome.stage_rows.get(self.selected_plan_key(), ()):
            values = list(row.values())
            if row.peer_id in measured_ms:
                values[-1] = f"{values[-1]}/{measured_ms[row.peer_id]:.3g}"
            self.tree.insert("", "end", values=values)
        self._fit_columns()

    def _fit_columns(self) -> None:
        """Each column as wide as its widest cell or heading, so nothing is cut off (the panel
        grows with the table)."""
        body = tkfont.Font(font=TABLE_FONT)
        heading = tkfont.Font(font=(*TABLE_FONT, "bold"))
        rows = [self.tree.item(item, "values") for item in self.tree.get_children()]
        for col, (name, _width) in enumerate(STAGE_COLUMNS):
            widest = max([heading.measure(HEADINGS.get(name, name))]
                         + [body.measure(str(row[col])) for row in rows if col < len(row)])
            self.tree.column(name, width=widest + CELL_PAD_PX, stretch=False)
        total = sum(int(self.tree.column(name, "width")) for name, _w in STAGE_COLUMNS)
        self.grid_columnconfigure(0, minsize=total + 24)   # a treeview does not ask for it


def _style_treeview() -> None:
    """ttk ignores customtkinter's theme: colour the table to match the appearance mode."""
    dark = ctk.get_appearance_mode() == "Dark"
    style = ttk.Style()
    style.theme_use("default")
    background, foreground, heading = ("#2b2b2b", "#e6e6e6", "#3a3a3a") if dark else ("#f5f5f5", "#1a1a1a", "#dcdcdc")
    style.configure("Prismn.Treeview", background=background, fieldbackground=background,
                    foreground=foreground, rowheight=20, font=TABLE_FONT, borderwidth=0)
    style.configure("Prismn.Treeview.Heading", background=heading, foreground=foreground,
                    font=(*TABLE_FONT, "bold"), relief="flat")
    style.map("Prismn.Treeview", background=[("selected", "#1f6aa5")])
