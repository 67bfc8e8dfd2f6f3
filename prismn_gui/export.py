"""Exports: a plan as the engine's JSON (Plan.to_dict, schema prismn.plan/1) and the map as PNG."""

from __future__ import annotations

import json
import os
from pathlib import Path

from engine.plan import Plan


def write_plan_json(plan: Plan, path: str | os.PathLike) -> Path:
    target = Path(path)
    text = json.dumps(plan.to_dict(), indent=2, ensure_ascii=False)
    _atomic_write(target, text)
    return target


def write_figure_png(figure, path: str | os.PathLike, dpi: int = 150) -> Path:
    target = Path(path)
    figure.savefig(target, format="png", dpi=dpi, facecolor=figure.get_facecolor())
    return target


def write_state_json(state: dict, path: str | os.PathLike) -> None:
    """The test hook's state file; written atomically so a reader never sees half a file."""
    _atomic_write(Path(path), json.dumps(state, indent=1))


def _atomic_write(target: Path, text: str) -> None:
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
