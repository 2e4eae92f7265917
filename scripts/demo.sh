#!/usr/bin/env bash
# Set up, generate the FS-COCO-shaped sample if it is missing, pre-train the sample's tiny CLIP
# (once: a few minutes on 2 idle CPU cores, measured in docs/demo-timing.md; later runs reuse the file) and run
# the full training pipeline (ingestion -> splits -> prompts -> fit -> select -> evaluate) on CPU. Extra arguments go to
# `kedro run --pipelines=train`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
if [ ! -d data/01_raw/sample/fscoco/text ]; then
  kedro run --pipelines=make_sample --env=sample
fi
kedro run --pipelines=pretrain_sample --env=sample   # reuses data/06_models/sample/tiny-clip.safetensors when it matches
kedro run --pipelines=train --env=sample "$@"   # ends on a summary: test scores, checkpoint, MLflow run, next commands
