#!/usr/bin/env bash
# Set up, generate the FS-COCO-shaped sample and pre-train the sample's tiny CLIP if they are missing
# (make_sample pipeline), then run the full training pipeline (ingestion -> splits -> prompts -> fit
# -> select -> evaluate) on CPU. Extra arguments go to the training run's kedro.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
if [ ! -d data/01_raw/sample/fscoco/text ]; then
  # the sample (a few seconds) + the tiny CLIP's contrastive pre-training (a couple of minutes)
  kedro run --pipelines=make_sample --env=sample
else
  # the sample is there: (re)use the pre-trained weights; the node keeps the weight file when it
  # was trained with the current `pretrain:` parameters and trains again otherwise
  kedro run --pipelines=make_sample --env=sample --nodes=pretrain_tiny_clip
fi
kedro run --pipelines=train --env=sample "$@"
