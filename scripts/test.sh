#!/usr/bin/env bash
# The whole test suite: sets up .venv if needed, then runs pytest. GUI tests start their own Xvfb.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
