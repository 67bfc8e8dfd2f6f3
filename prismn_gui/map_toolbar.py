"""Zoom and pan for the map in a small bar beside the tab buttons, so the map keeps its height.

matplotlib's own navigation (home, pan, zoom, save) without the back/forward/subplot buttons and
without the two-line coordinate readout, which alone took a 50-pixel row under the map.
"""

from __future__ import annotations

from typing import Any

from matplotlib.backends.backend_tkagg import NavigationToolbar2Tk

KEPT_TOOLS = ("Home", "Pan", "Zoom", "Save")


class MapToolbar(NavigationToolbar2Tk):
    toolitems = tuple(item for item in NavigationToolbar2Tk.toolitems if item[0] in KEPT_TOOLS)

    def __init__(self, canvas: Any, master: Any) -> None:
        super().__init__(canvas, master, pack_toolbar=False)
        for child in self.pack_slaves():
            if child not in self._buttons.values():
                child.pack_forget()           # the coordinate readout and its two-line filler
        self.pack_propagate(True)

    def set_message(self, s: str) -> None:     # no readout: the hover tooltip says what is under the mouse
        pass


    def show_over(self, over: Any, visible: bool) -> None:
        """At the top right of `over` (the tab view), in its tab-button row; hidden off the map tab."""
        if visible:
            self.place(in_=over, relx=1.0, x=-6, y=0, anchor="ne")
        else:
            self.place_forget()


def add_map_toolbar(canvas: Any, master: Any, over: Any) -> MapToolbar:
    toolbar = MapToolbar(canvas, master)
    toolbar.update()
    toolbar.show_over(over, visible=True)
    return toolbar
