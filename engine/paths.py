"""Where Prismn's shipped files and per-user data live."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = REPO_ROOT / "assets"


def user_data_dir() -> Path:
    """Per-user data folder (store, caches): $PRISMN_HOME, else $XDG_DATA_HOME/prismn, else ~/.local/share/prismn."""
    explicit = os.environ.get("PRISMN_HOME")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "prismn"
