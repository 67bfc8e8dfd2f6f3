#!/usr/bin/env bash
# GPU check for one NVIDIA GPU (H100 class), under 15 minutes:
#   1. NVML readings through engine.runner.device_metrics (GPU name, VRAM, utilisation, power);
#   2. CUDA runners: the pipeline stages below load on the GPU and report device + NVML in their ready line;
#   3. a 2-stage pipeline (layers 0:16, 16:32) of a Llama-3.1-8B-shaped model with random bf16 weights
#      vs the monolithic model on the same GPU: decode tokens/s, ratio (goal >= 0.8), and whether the
#      pipeline's greedy tokens equal the one-process loop's;
#   4. the same 8B shape through 2 CUDA runner stages at bf16 / int8 / int4 (weight-only, torchao:
#      Int8WeightOnly; Int4WeightOnly tinygemm packing): decode tokens/s and each stage's resident
#      weight bytes measured vs planned (device kind cuda).
# Usage: bash scripts/gpu_check.sh        (PYTHON=... to pick the interpreter; default .venv or python3)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    PYTHON=.venv/bin/python
  else
    PYTHON=python3
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
START=$(date +%s)

echo "== GPU =="
nvidia-smi --query-gpu=name,memory.total,memory.used,power.draw,driver_version --format=csv || true

echo "== versions and NVML readings =="
"$PYTHON" - <<'PY'
import importlib.util, json
import torch, transformers
from engine.runner.device_metrics import read_metrics
print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__,
                  "cuda": torch.cuda.is_available(), "iroh": importlib.util.find_spec("iroh") is not None}))
print(json.dumps(read_metrics().to_dict()))
assert torch.cuda.is_available(), "no CUDA device visible to torch"
PY

# One transport keeps the check inside its time box: iroh when installed, else TCP.
TRANSPORT=tcp
if "$PYTHON" -c "import iroh" 2>/dev/null; then TRANSPORT=iroh; fi

echo "== 2-stage Llama-3.1-8B-shaped pipeline (random bf16) vs monolithic, same GPU =="
timeout 420 "$PYTHON" benchmarks/bench_pipeline.py --random-preset llama-3.1-8b --dtype bf16 --device cuda \
  --stages 0:16,16:32 --tokens 64 --repeats 3 --transports "$TRANSPORT"

echo "== Llama-3.1-8B-shaped pipeline at bf16 / int8 / int4: tokens/s, weight bytes measured vs planned =="
timeout 480 "$PYTHON" benchmarks/bench_quant.py --random-preset llama-3.1-8b --device cuda \
  --stages 0:16,16:32 --quants bf16,int8,int4 --tokens 64

echo "== done in $(( $(date +%s) - START )) s =="
