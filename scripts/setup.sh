#!/usr/bin/env bash
# Create .venv (Python 3.11) and install the pinned dependencies + sketchseg; a no-op when up to date.
# Sourced by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
STAMP=.venv/.sketchseg-installed
WANT="$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "[setup] installing pinned dependencies (first time: ~3 GB, a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps -e .
  echo "$WANT" > "$STAMP"
fi
# Offline-friendly defaults: never wait on the model hub, NLTK data from ../shared when present,
# no Kedro telemetry.
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export KEDRO_DISABLE_TELEMETRY=1
export MKL_CBWR="${MKL_CBWR:-AUTO,STRICT}"   # bit-reproducible CPU BLAS across processes (src/sketchseg/__init__.py)
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"   # sleeping OpenMP threads: same results, far faster on a shared machine (src/sketchseg/__init__.py)
if [ -z "${NLTK_DATA:-}" ] && [ -d "$ROOT/../shared/nltk_data" ]; then
  export NLTK_DATA="$(cd "$ROOT/../shared/nltk_data" && pwd)"
fi
export PATH="$ROOT/.venv/bin:$PATH"
