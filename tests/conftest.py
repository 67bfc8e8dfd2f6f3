"""Suite-wide: the keyless National Grid carbon API stays off unless a test points it at a local fake.

Without this, a peer in Great Britain would make the default resolver call the real National Grid
API (free, no key) whenever the machine running the tests has internet: results would depend on it.
Set in os.environ (not monkeypatch) so the app and runner processes the tests start inherit it.
"""

import os

os.environ.setdefault("PRISMN_NATIONALGRID", "0")
