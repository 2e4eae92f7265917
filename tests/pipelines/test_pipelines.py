"""The project's pipelines run through Kedro's runner on generated data."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
import yaml

from tests.pipelines.kedro_utils import run


def _mlflow_runs(project):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    exps = [e for e in client.search_experiments() if e.name == "sketchseg-sample"]
    assert exps, "kedro-mlflow did not create the sample experiment"
    # the MLflow UI opens it as a model-training experiment (runs), not in its GenAI view
    assert exps[0].tags.get("mlflow.experimentKind") == "custom_model_development"
    return client, client.search_runs([exps[0].experiment_id])


def test_missing_real_data_fails_fast_with_instructions(kedro_project):
    with pytest.raises(Exception) as info:
        run(kedro_project, "ingestion", env="base")
    message = str(info.value)
    assert "data/01_raw/fscoco" in message
    assert "make_sample" in message


def test_data_pipelines_on_generated_sample(kedro_project):
    run(kedro_project, "make_sample")
    assert (kedro_project / "data/01_raw/sample/fscoco/vector_sketches/1").is_dir()
    run(kedro_project, "data")
    manifest = pd.read_parquet(kedro_project / "data/02_intermediate/fscoco_manifest.parquet")
    quarantine = pd.read_parquet(kedro_project / "data/02_intermediate/ingestion_quarantine.parquet")
    splits = pd.read_parquet(kedro_project / "data/03_primary/sketch_splits.parquet")
    prompts = pd.read_parquet(kedro_project / "data/04_feature/sketch_prompts.parquet")
    assert len(manifest) == 30 and len(quarantine) == 0
    assert splits["split"].value_counts().to_dict() == {"train": 16, "val": 8, "test": 6}
    # the generator annotates exactly the val/test sketches of the protocol split
    annotated = splits[splits["labels_json"].notna()]
    assert set(annotated["split"]) == {"val", "test"} and len(annotated) == 14
    assert len(prompts) == 30 and prompts["n_categories"].gt(0).all()
    assert all(p.startswith("A sketch of ") for ps in prompts["prompts"] for p in ps)
    assert (kedro_project / "data/08_reporting/category_vocabulary.png").stat().st_size > 0
    client, runs = _mlflow_runs(kedro_project)
    metrics = {k for r in runs for k in r.data.metrics}
    assert {"ingestion.n_sketches", "split.n_train", "prompts.vocabulary_size"} <= metrics
    params = {k for r in runs for k in r.data.params}
    assert "splits.val_per_participant" in params


@pytest.mark.slow
def test_train_pipeline_end_to_end(kedro_project):
    """The sample env as configured: its tiny CLIP pre-trained by pretrain_sample (a smoke run of
    TINY's pretrain.* size), then train starting from that file (model.pretrained)."""
    sample_model = yaml.safe_load((kedro_project / "conf/sample/parameters.yml").read_text())["model"]
    as_configured = {"model.pretrained": sample_model["pretrained"], "model.allow_random_init": False}
    run(kedro_project, "make_sample")
    with pytest.raises(Exception, match="pretrain_sample"):  # no weights yet: the error says what writes them
        run(kedro_project, "train", params=as_configured)
    run(kedro_project, "pretrain_sample")
    assert (kedro_project / sample_model["pretrained"]).stat().st_size > 0
    run(kedro_project, "train", params={"training.epochs": 2, **as_configured})
    report = json.loads((kedro_project / "data/08_reporting/sample/ours-sample/test_metrics.json").read_text())
    for key in ("test_miou", "test_pixel_acc", "test_stroke_acc", "test_mean_acc", "test_fwiou"):
        assert 0.0 <= report[key] <= 100.0
    assert report["n_test_sketches"] == 6
    # MeanAcc / FWIoU per category over the test set (S2.3.1), from the catalogued per-category table
    from sketchseg.engine.metrics import class_pooled_metrics

    per_category = kedro_project / "data/08_reporting/sample/ours-sample/test_per_category.csv"
    pooled = class_pooled_metrics(pd.read_csv(per_category))
    assert report["test_mean_acc"] == pytest.approx(pooled["mean_acc"], abs=1e-6)
    assert report["test_fwiou"] == pytest.approx(pooled["fwiou"], abs=1e-6)
    assert report["checkpoint_epoch"] in (1, 2) and report["checkpoint"] == "best"
    assert (kedro_project / "data/06_models/sample/ours-sample/best.safetensors").stat().st_size > 0
    # Tab. S9 "Last": the same run's final checkpoint scored instead of the chosen one
    run(kedro_project, "evaluation", params={"evaluation.checkpoint": "last", **as_configured})
    last = json.loads((kedro_project / "data/08_reporting/sample/ours-sample/test_metrics.json").read_text())
    assert last["checkpoint"] == "last" and last["checkpoint_epoch"] == 2
    assert last["scoring"]["evaluation.checkpoint"] == "last"
    history = pd.read_csv(kedro_project / "data/07_model_output/sample/ours-sample/training_history.csv")
    assert history["epoch"].tolist() == [0, 1, 2]
    assert history["val_miou"].notna().all()
    client, runs = _mlflow_runs(kedro_project)
    train_runs = [r for r in runs if "test_miou" in r.data.metrics and r.data.tags["sketchseg.pipeline"] == "train"]
    assert len(train_runs) == 1
    last_runs = [r for r in runs if r.data.tags["sketchseg.pipeline"] == "evaluation"]
    assert len(last_runs) == 1 and last_runs[0].data.tags["sketchseg.checkpoint"] == "last"
    r = train_runs[0]
    assert r.data.tags["sketchseg.variant"] == "ours-sample"
    assert r.data.params["model.margin"] == "0.3"
    assert r.data.params["model.pretrained"] == sample_model["pretrained"]
    steps = [m.step for m in client.get_metric_history(r.info.run_id, "val_miou")]
    assert steps == [0, 1, 2]
    assert [m.step for m in client.get_metric_history(r.info.run_id, "threshold")] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(r.info.run_id)}
    assert "checkpoints" in artifacts
    assert {a.path for a in client.list_artifacts(r.info.run_id, "checkpoints")} == {"checkpoints/best.safetensors"}


def test_quarantine_is_catalogued_and_counted_in_mlflow(kedro_project):
    run(kedro_project, "make_sample")
    caption = sorted((kedro_project / "data/01_raw/sample/fscoco/text/3").glob("*.txt"))[0]
    caption.write_bytes(b"")
    run(kedro_project, "ingestion", params={"data.max_rejection_rate": 0.1})
    quarantine = pd.read_parquet(kedro_project / "data/02_intermediate/ingestion_quarantine.parquet")
    assert quarantine[["path", "reason"]].values.tolist() == [[str(caption.relative_to(kedro_project)), "caption is empty"]]
    client, runs = _mlflow_runs(kedro_project)
    metrics = [r.data.metrics for r in runs if "ingestion.n_sketches" in r.data.metrics][0]
    assert metrics["ingestion.n_sketches"] == 29
    assert metrics["ingestion.reason.caption_is_empty"] == 1
    # over the limit, the run stops and says why
    with pytest.raises(Exception, match="caption is empty"):
        run(kedro_project, "ingestion", params={"data.max_rejection_rate": 0.01})
