"""Variant presets through Kedro (hooks + kedro-mlflow) and a 2-variant grid, on one tiny sample."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from sketchseg.experiments.compare import compare
from sketchseg.experiments.grid import run_grid
from sketchseg.model.checkpoint import FORMAT, read_checkpoint_metadata
from tests.conftest import copy_project
from tests.pipelines.kedro_utils import TINY, run

FAST = {"training.epochs": 1, "training.validate_before_training": False}


def _client(project) -> tuple[mlflow.MlflowClient, str]:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("sketchseg-sample")
    assert exp is not None, "kedro-mlflow did not create the sample experiment"
    return client, exp.experiment_id


@pytest.fixture(scope="module")
def sample_project(tmp_path_factory):
    """One copy of the project with the tiny generated sample, shared by the tests below."""
    project = copy_project(tmp_path_factory.mktemp("variants") / "project")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        run(project, "make_sample")
        yield project


@pytest.mark.slow
def test_variant_preset_reaches_the_nodes_and_mlflow(sample_project):
    run(sample_project, "train", params={**FAST, "experiment.variant": "wo_category_level", "model.margin": 0.4})
    client, exp_id = _client(sample_project)
    runs = client.search_runs([exp_id], filter_string="tags.`sketchseg.variant` = 'wo_category_level'")
    assert len(runs) == 1
    r = runs[0]
    params, tags = r.data.params, r.data.tags
    assert params["model.use_category_level"] == "False"  # the preset's value, logged by kedro-mlflow
    assert params["model.margin"] == "0.4"  # the command line wins over the preset and the env
    assert params["experiment.variant"] == "wo_category_level" and params["experiment.group"] == "Tab. 4"
    assert params["model.finetune"] == "full"  # untouched keys keep conf/sample's value
    assert tags["mlflow.runName"] == "wo_category_level" and r.info.run_name == "wo_category_level"
    assert tags["sketchseg.group"] == "Tab. 4" and tags["sketchseg.description"].startswith("w/o category level")
    assert tags["sketchseg.preset"] == "yes" and tags["sketchseg.model.use_category_level"] == "False"
    assert tags["sketchseg.model.holistic_token"] == "vst" and tags["sketchseg.evaluation.overlap_rule"] == "most_strokes"  # the protocol default (#16)
    assert tags["sketchseg.model.inference_prompts"] == "template"
    assert "test_miou" in r.data.metrics
    history = pd.read_csv(sample_project / "data/07_model_output/sample/wo_category_level/training_history.csv")
    assert history["train_loss_category"].fillna(0).eq(0).all() and history["train_loss_global"].gt(0).all()


def _demo_model(project) -> dict[str, bytes]:
    """Stand-ins for the demo's model and numbers (variant ours-sample) where `bash scripts/demo.sh` writes them."""
    best = project / "data/06_models/sample/ours-sample/best.safetensors"
    best.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": torch.zeros(1)}, str(best), metadata={"format": FORMAT, "variant": "ours-sample", "epoch": "9"})
    metrics = project / "data/08_reporting/sample/ours-sample/test_metrics.json"
    metrics.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text(json.dumps({"test_miou": 42.0}), encoding="utf-8")
    return {str(p): p.read_bytes() for p in (best, metrics)}


@pytest.mark.slow
def test_two_variant_grid_gives_a_two_row_table(sample_project):
    demo = _demo_model(sample_project)
    extra = ",".join(f"{k}={'null' if v is None else v}".replace(" ", "") for k, v in {**TINY, **FAST}.items())
    results = run_grid(sample_project, "sample", ["zero_shot_clip", "wo_vv"], "grid-test", extra_params=extra,
                       timeout=300)
    logs = {r.variant: r.log_path.read_text(encoding="utf-8")[-3000:] for r in results if r.log_path}
    assert [r.variant for r in results] == ["zero_shot_clip", "wo_vv"]
    assert all(r.ok for r in results), logs
    # a grid after the demo (issue #24): each variant has its own model and numbers, the demo's are untouched
    assert {path: open(path, "rb").read() for path in demo} == demo
    for name in ("zero_shot_clip", "wo_vv"):
        best = sample_project / "data/06_models/sample" / name / "best.safetensors"
        assert read_checkpoint_metadata(best)["variant"] == name
        assert (sample_project / "data/08_reporting/sample" / name / "test_metrics.json").is_file()
        assert (sample_project / "data/07_model_output/sample" / name / "training_history.csv").is_file()
    table = compare(sample_project, "sample", grid="grid-test", out="data/08_reporting/comparison",
                    selection=["zero_shot_clip", "wo_vv"])
    assert list(table["variant"]) == ["zero_shot_clip", "wo_vv"] and list(table["status"]) == ["ok", "ok"]
    assert table["test_miou"].between(0, 100).all() and list(table["paper_miou"]) == [17.33, 43.55]
    assert list(table["best_epoch"]) == [0, 1]  # zero-shot never trains: its checkpoint is epoch 0
    out = sample_project / "data/08_reporting/comparison"
    assert len(pd.read_csv(out / "comparison.csv")) == 2
    md = (out / "comparison.md").read_text(encoding="utf-8")
    assert "| zero_shot_clip | Tab. 2 |" in md and "| wo_vv | Tab. 4 |" in md
    client, exp_id = _client(sample_project)
    tagged = client.search_runs([exp_id], filter_string="tags.`sketchseg.grid` = 'grid-test'")
    assert sorted(r.data.params["model.vv_inference"] for r in tagged) == ["False", "False"]
    assert {r.data.params["training.train_mode"] for r in tagged} == {"False", "True"}
