"""`kedro run --pipelines=train --params=training.resume=true` continues an interrupted run exactly."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from tests.conftest import copy_project
from tests.pipelines.kedro_utils import run


@pytest.mark.slow
def test_interrupted_then_resumed_run_matches_uninterrupted(tmp_path, monkeypatch):
    a = copy_project(tmp_path / "uninterrupted")
    monkeypatch.chdir(a)
    run(a, "make_sample")
    run(a, "train", params={"training.epochs": 2})
    full = json.loads((a / "data/08_reporting/sample/ours-sample/test_metrics.json").read_text())
    full_history = pd.read_csv(a / "data/07_model_output/sample/ours-sample/training_history.csv")

    b = copy_project(tmp_path / "interrupted")
    shutil.copytree(a / "data/01_raw", b / "data/01_raw", dirs_exist_ok=True)
    monkeypatch.chdir(b)
    # the first run ends after epoch 1 (as a crash right after that epoch's state was written) ...
    run(b, "train", params={"training.epochs": 1})
    assert (b / "data/06_models/sample/ours-sample/training_state.pt").is_file()
    # ... and the second continues it to epoch 2
    run(b, "train", params={"training.epochs": 2, "training.resume": True})
    resumed = json.loads((b / "data/08_reporting/sample/ours-sample/test_metrics.json").read_text())
    resumed_history = pd.read_csv(b / "data/07_model_output/sample/ours-sample/training_history.csv")

    for key in ("test_miou", "test_pixel_acc", "test_stroke_acc", "checkpoint_epoch"):
        assert resumed[key] == full[key], key
    val_cols = [c for c in full_history.columns if c.startswith("val_")]
    pd.testing.assert_frame_equal(resumed_history[val_cols], full_history[val_cols], check_exact=True)
    # training losses: equal up to float summation order (BLAS threading under load)
    cols = [c for c in full_history.columns if c != "epoch_seconds"]
    pd.testing.assert_frame_equal(resumed_history[cols], full_history[cols], rtol=1e-5)
