#!/usr/bin/env bash
# Time London training (100 epochs, --device cuda --bf16, batch 1024 and 4096) and evaluation
# on a GPU machine, from a bare checkout of this repository.
#
# Prepare on the CPU machine (it has the data and DuckDB), from the repo root:
#     .venv/bin/python -m bench.data            # writes .calliper/bench/london_inputs.npz (~1 MB)
# then carry that file (e.g. the device tool's carry: [".calliper/bench"]) and run there:
#     bash bench/gpu.sh [OUT_DIR]               # results: OUT_DIR/gpu_results.{md,json}
#
# The GPU machine needs python3 with torch (CUDA), numpy, pandas, scikit-learn and tqdm; the
# project is installed without its dependencies (DuckDB, geopandas, MLflow, Dagster are not
# used here). Wheels of anything missing can be carried in .whl/ (installed first if present).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT_DIR=${1:-${OUT:-bench-gpu-out}}
BUNDLE=${BUNDLE:-.calliper/bench/london_inputs.npz}
export PYTHONUNBUFFERED=1

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# The project itself, without dependencies; fall back to the source tree on the path.
if ! "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e . 2>/dev/null; then
    echo "pip install -e . failed; using the source tree on PYTHONPATH" >&2
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

"$PY" - <<'PYCHECK'
import importlib.util, sys
missing = [m for m in ("torch", "numpy", "pandas", "sklearn", "tqdm") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing Python packages: {missing} (carry their wheels in .whl/)")
import torch
if not torch.cuda.is_available():
    sys.exit("torch sees no CUDA device")
print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
PYCHECK

if [ ! -f "$BUNDLE" ]; then
    echo "no $BUNDLE: run '.venv/bin/python -m bench.data' on the CPU machine and carry it" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -m bench.gpu_run --bundle "$BUNDLE" --batches "${BATCHES:-1024,4096}" \
    --epochs "${EPOCHS:-100}" --out "$OUT_DIR"
