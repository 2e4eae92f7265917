#!/usr/bin/env bash
# Set up, generate the FS-COCO-shaped sample if it is missing, and run the full training pipeline
# (ingestion -> splits -> prompts -> fit -> select -> evaluate) on CPU. Extra arguments go to kedro.
# (The opt-in tiny-CLIP pre-training is `kedro run --pipelines=pretrain_sample --env=sample`.)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
if [ ! -d data/01_raw/sample/fscoco/text ]; then
  kedro run --pipelines=make_sample --env=sample
fi
kedro run --pipelines=train --env=sample "$@"
