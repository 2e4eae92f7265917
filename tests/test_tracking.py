"""The MLflow experiment's kind tag: the MLflow 3 UI opens the project's experiments on their runs
(model training), not in its GenAI view; a kind someone chose stays."""

from __future__ import annotations

import mlflow
import pytest

from sketchseg.tracking import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND, mark_experiment_as_model_training


@pytest.fixture
def tracking(tmp_path):
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield mlflow.MlflowClient()
    mlflow.set_tracking_uri(previous)


def _kind_after_a_run(client, name, tags=None):
    experiment_id = client.create_experiment(name, tags=tags)
    with mlflow.start_run(experiment_id=experiment_id):
        changed = mark_experiment_as_model_training()
    return changed, client.get_experiment(experiment_id).tags.get(EXPERIMENT_KIND_TAG)


def test_new_experiment_is_tagged_as_model_training(tracking):
    assert _kind_after_a_run(tracking, "plain") == (True, MODEL_TRAINING_KIND) == (True, "custom_model_development")


def test_an_inferred_kind_is_replaced_and_a_chosen_one_kept(tracking):
    assert _kind_after_a_run(tracking, "inferred", {EXPERIMENT_KIND_TAG: "genai_development_inferred"}) == (
        True, MODEL_TRAINING_KIND)
    assert _kind_after_a_run(tracking, "chosen", {EXPERIMENT_KIND_TAG: "genai_development"}) == (
        False, "genai_development")


def test_without_an_active_run_nothing_happens():
    assert mlflow.active_run() is None and mark_experiment_as_model_training() is False


def test_an_experiment_is_tagged_by_id_without_a_run(tracking):
    experiment_id = tracking.create_experiment("refused-first-run")
    assert mark_experiment_as_model_training(experiment_id) is True
    assert tracking.get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND


def test_the_ui_address_opens_the_model_training_view():
    """MLflow 3.17's UI follows its "GenAI / Model training" switch (URL parameter ``workflowType``,
    else the browser's last choice, else GenAI) rather than the experiment's kind tag: the address
    the README and the demo give carries the parameter. The installed UI bundle is checked for it,
    so an MLflow that changes this is noticed."""
    from pathlib import Path

    from sketchseg.tracking import ui_url

    assert ui_url("3") == "http://127.0.0.1:5000/#/experiments/3?workflowType=machine_learning"
    assert ui_url("3", "abc") == "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    assert ui_url() == "http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"
    bundle = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"
    main = next(bundle.glob("main.*.js")).read_text(encoding="utf-8", errors="replace")
    assert 'e.get("workflowType")' in main and 'MACHINE_LEARNING="machine_learning"' in main
    assert "createHashRouter" in main  # addresses are /#/experiments/<id>
