"""Suite-wide: the keyless National Grid carbon API stays off unless a test points it at a local fake.

Without this, a peer in Great Britain would make the default resolver call the real National Grid
API (free, no key) whenever the machine running the tests has internet: results would depend on it.
Set in os.environ (not monkeypatch) so the app and runner processes the tests start inherit it.

Also the one polling helper, `wait_for` (import it: `from tests.conftest import wait_for`).
"""

import os

os.environ.setdefault("PRISMN_NATIONALGRID", "0")


def wait_for(condition, timeout_s: float, what: str, every_s: float = 0.05):
    """Poll `condition` until it returns something truthy (returned), or fail naming `what` after
    `timeout_s`: tests wait with a deadline, never a fixed sleep."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
