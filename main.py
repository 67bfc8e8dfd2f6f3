"""Prismn desktop application: `python main.py`."""

from prismn_gui.app import main

if __name__ == "__main__":
    raise SystemExit(main())
