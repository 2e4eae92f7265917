#!/usr/bin/env bash
# Issue #5's GPU work in ONE device call (a lent machine has ~15 min in all, its start included):
#   1. benchmarks/gpu_check.py  bf16 correctness (fast vs reference, training, checkpoint) and the
#                               sample's train + evaluation nodes in bf16 vs their CPU fp32 results
#   2. benchmarks/bench_model.py ViT-B-16 fast vs reference, every lever, torch.compile
#   3. benchmarks/bench_fit.py   the real training loop at FS-COCO scale (9025 + 475 sketches/epoch)
#                               and the data-loading levers (loader processes, pinned memory, rasters)
# Prepare here first: `bash scripts/demo.sh && python benchmarks/gpu_prepare.py` (writes .gpu/),
# then call the device tool with the carry list gpu_prepare prints and `bash benchmarks/gpu_session.sh`.
# Results land in $OUT (8 files at most come back); each step has its own time limit, and a failed
# step does not stop the next. GPU_SESSION_QUICK=1 rehearses the whole script on CPU at CI size.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TQDM_MININTERVAL=10
if ls .gpu/wheels/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/sketchseg-site \
    .gpu/wheels/*.whl || exit 1
  export PYTHONPATH="/tmp/sketchseg-site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}"
if [ "${GPU_SESSION_QUICK:-0}" = 1 ]; then
  DEV=(--device cpu --quick); T1=300; T2=300; T3=300; FIT=(--epochs 2 --loader-levers)
else
  DEV=(--device cuda); T1=150; T2=200; T3=170
  FIT=(--epochs 3 --workers 12 --max-categories 0 --loader-levers --loader-sketches 2000)  # 0: every category (paper)
fi
{
  date -u +%FT%TZ; git log -1 --format='commit %H' 2>/dev/null; nvidia-smi 2>&1 | head -15
  "$PY" -c 'import sys, torch, open_clip; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "open_clip", open_clip.__version__)'
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
SAMPLE=(); [ -f .gpu/sample.json ] && SAMPLE=(--sample .gpu/sample.json)
rc=0
timeout "$T1" "$PY" benchmarks/gpu_check.py "${DEV[@]}" "${SAMPLE[@]}" --json "$OUT/gpu_check.json" \
  > "$OUT/gpu_check.log" 2>&1 || rc=1
tail -n 60 "$OUT/gpu_check.log"
timeout "$T2" "$PY" benchmarks/bench_model.py "${DEV[@]}" --compile --out "$OUT/benchmarks.md" \
  --json "$OUT/bench_model.json" > "$OUT/bench_model.log" 2>&1 || rc=1
tail -n 5 "$OUT/bench_model.log"
timeout "$T3" "$PY" benchmarks/bench_fit.py "${DEV[@]}" "${FIT[@]}" --out "$OUT/benchmarks.md" \
  --json "$OUT/bench_fit.json" > "$OUT/bench_fit.log" 2>&1 || rc=1
tail -n 20 "$OUT/bench_fit.log"
echo "gpu_session: $([ $rc = 0 ] && echo 'every step succeeded' || echo 'a step FAILED: see its log in $OUT')"
exit $rc
