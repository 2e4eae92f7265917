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
# The caption parser's NLTK data in the project's own data/00_nltk (git-ignored), where sketchseg
# finds it without any environment variable (src/sketchseg/text/nltk_setup.py): copied from
# ../shared/nltk_data when present, else downloaded when online (a 2 s probe first; never fatal here,
# every run's pre-flight names what is missing).
NLTK_DIR="$ROOT/data/00_nltk"
if [ ! -d "$NLTK_DIR/tokenizers/punkt_tab" ] || [ ! -d "$NLTK_DIR/taggers/averaged_perceptron_tagger_eng" ] \
   || { [ ! -d "$NLTK_DIR/corpora/wordnet" ] && [ ! -f "$NLTK_DIR/corpora/wordnet.zip" ]; }; then
  if [ -d "$ROOT/../shared/nltk_data" ]; then
    mkdir -p "$NLTK_DIR" && cp -R "$ROOT/../shared/nltk_data/." "$NLTK_DIR/" \
      && echo "[setup] NLTK data copied from ../shared/nltk_data into data/00_nltk" \
      || echo "[setup] could not copy ../shared/nltk_data into data/00_nltk"
  else
    echo "[setup] fetching the NLTK data into data/00_nltk"
    PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" .venv/bin/python -m sketchseg.text.nltk_setup || true
  fi
fi
# Offline-friendly defaults: never wait on the model hub, no Kedro telemetry.
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export KEDRO_DISABLE_TELEMETRY=1
export MKL_CBWR="${MKL_CBWR:-AUTO,STRICT}"   # bit-reproducible CPU BLAS across processes (src/sketchseg/__init__.py)
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"   # sleeping OpenMP threads: same results, far faster on a shared machine (src/sketchseg/__init__.py)
export PATH="$ROOT/.venv/bin:$PATH"
