"""Suite-wide: the keyless National Grid carbon API stays off unless a test points it at a local fake;
one way to wait for something (`poll`); the Xvfb display the GUI tests draw on.

Without the first, a peer in Great Britain would make the default resolver call the real National Grid
API (free, no key) whenever the machine running the tests has internet: results would depend on it.
Set in os.environ (not monkeypatch) so the app and runner processes the tests start inherit it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

os.environ.setdefault("PRISMN_NATIONALGRID", "0")

T = TypeVar("T")


def poll(predicate: Callable[[], T], timeout_s: float, what: str | Callable[[], str], *,
         every_s: float = 0.05, before_each: Callable[[], object] | None = None) -> T:
    """Call `predicate` until it returns something truthy, and return that; after `timeout_s` fail
    the test saying what was awaited (`what` may be a function, to report the last thing seen).

    `before_each` runs before every try (a Tk test passes `root.update` so the window keeps working).
    In async code: `await asyncio.to_thread(poll, ...)`.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if before_each is not None:
            before_each()
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what() if callable(what) else what}")
        time.sleep(every_s)


GUI_TOOLS = ("Xvfb", "xdotool", "import")


def _require_gui_tools() -> None:
    missing = [tool for tool in GUI_TOOLS if shutil.which(tool) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"GUI tests need {missing} in CI")
        pytest.skip(f"missing {missing} (install xvfb xdotool imagemagick)")


# Session scope: an in-process Tk (the runners panel tests) keeps its X connection after its test; if that
# display's Xvfb went away at the end of a module, Xlib's IO error handler would exit the whole pytest run
# with status 1 the next time Tk touched it. Displays live until the session ends.
@pytest.fixture(scope="session")
def display():
    """An Xvfb display (":N"); skipped only when Xvfb is missing outside CI, a failure in CI (env CI set)."""
    _require_gui_tools()
    # -displayfd: Xvfb picks a free display number itself and writes it to the pipe when ready.
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x800x24",
                             "-nolisten", "tcp"], pass_fds=(write_fd,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        if not number:
            pytest.fail("Xvfb did not report a display number")
        yield f":{number}"
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)
