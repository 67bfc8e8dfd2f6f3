"""Where Prismn's shipped files and per-user data live."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _assets_dir() -> Path:
    """A checkout's assets/ folder, else the copy `pip install .` puts under <prefix>/share/prismn."""
    explicit = os.environ.get("PRISMN_ASSETS")
    if explicit:
        return Path(explicit)
    checkout = REPO_ROOT / "assets"
    if checkout.is_dir():
        return checkout
    # <prefix>/lib/pythonX.Y/site-packages/engine -> <prefix>; `pip install --target DIR` -> DIR
    for prefix in (Path(sys.prefix), REPO_ROOT.parents[2], REPO_ROOT):
        installed = prefix / "share" / "prismn" / "assets"
        if installed.is_dir():
            return installed
    return checkout          # missing: the loaders name this path in their errors


ASSETS_DIR = _assets_dir()


def user_data_dir() -> Path:
    """Per-user data folder (store, caches): $PRISMN_HOME, else $XDG_DATA_HOME/prismn, else ~/.local/share/prismn."""
    explicit = os.environ.get("PRISMN_HOME")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "prismn"
