"""The window's first size, from the screen it opens on: 1280x800 where it fits, else the screen
less room for the desktop's panels, so the status line stays visible on a 1366x768 laptop."""

from __future__ import annotations

PREFERRED = (1280, 800)
MINIMUM = (960, 600)
DESKTOP_MARGIN = (16, 90)         # window decorations, a taskbar / top bar


def initial_size(screen_w: int, screen_h: int) -> tuple[int, int]:
    width = max(MINIMUM[0], min(PREFERRED[0], screen_w - DESKTOP_MARGIN[0]))
    height = max(MINIMUM[1], min(PREFERRED[1], screen_h - DESKTOP_MARGIN[1]))
    return width, height


def minimum_size(screen_w: int, screen_h: int) -> tuple[int, int]:
    width, height = initial_size(screen_w, screen_h)
    return min(MINIMUM[0], width), min(MINIMUM[1], height)
