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
