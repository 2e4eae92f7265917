"""Thin MLflow helpers that do nothing when no run is active (unit tests, plain Python use)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _active_run():
    try:
        import mlflow
    except ImportError:  # pragma: no cover - mlflow is a dependency
        return None, None
    return mlflow, mlflow.active_run()


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log finite numeric metrics to the active MLflow run (no-op without one)."""
    mlflow, run = _active_run()
    if run is None:
        return
    clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
    if clean:
        mlflow.log_metrics(clean, step=step)


def set_tags(tags: Mapping[str, Any]) -> None:
    mlflow, run = _active_run()
    if run is None:
        return
    mlflow.set_tags({k: str(v) for k, v in tags.items()})


def active_run_id() -> str | None:
    """The id of the active MLflow run (None without one)."""
    _, run = _active_run()
    return None if run is None else str(run.info.run_id)


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    mlflow, run = _active_run()
    if run is None:
        return
    mlflow.log_artifact(str(path), artifact_path=artifact_path)


#: MLflow 3's UI opens an experiment by its kind (experiment tag ``mlflow.experimentKind``); without
#: one it may open the GenAI view with the runs under "Evaluations". ``custom_model_development`` is
#: the UI's "machine learning" (model training) kind.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
_UNCHOSEN_KINDS = ("", "no_inferred_type", "empty")


def mark_experiment_as_model_training() -> bool:
    """Tag the active run's experiment as a model-training one for the MLflow UI, unless it already
    has a kind someone chose (a kind the UI only inferred is replaced); True when the tag was set."""
    mlflow, run = _active_run()
    if run is None:
        return False
    client = mlflow.MlflowClient()
    experiment_id = run.info.experiment_id
    kind = client.get_experiment(experiment_id).tags.get(EXPERIMENT_KIND_TAG)
    if kind is not None and kind not in _UNCHOSEN_KINDS and not kind.endswith("_inferred"):
        return False
    client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
    logger.debug("MLflow experiment %s tagged %s=%s", experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
    return True


def tag_run_with_experiment(params: Mapping[str, Any], pipeline_name: Any = None) -> None:
    """Name the active run after ``experiment.variant`` and tag it with the switches that define it."""
    mlflow, run = _active_run()
    if run is None:
        return
    exp = dict(params.get("experiment") or {})
    variant = str(exp.get("variant") or "ours")
    names = list(pipeline_name) if isinstance(pipeline_name, (list, tuple)) else [pipeline_name or "__default__"]
    model_pipelines = {"__default__", "train", "training", "evaluation", "report", "segment"}
    # runs that train or score a model are named after the variant; data-only runs after the pipeline
    name = variant if model_pipelines & set(names) else "+".join(str(n) for n in names)
    tags = {
        "mlflow.runName": name,
        "sketchseg.variant": variant,
        "sketchseg.pipeline": ",".join(str(n) for n in names),
    }
    if exp.get("description"):
        tags["mlflow.note.content"] = str(exp["description"])
    model = params.get("model") or {}
    for key in ("clip_model", "finetune", "num_visual_prompts", "vv_train", "vv_inference",
                "use_category_level", "cross_attention", "thresholding", "use_global_loss",
                "upsample_mode", "distance", "margin", "holistic_token", "category_loss_layers",
                "inference_normalization", "inference_prompts"):
        if key in model:
            tags[f"sketchseg.model.{key}"] = model[key]
    for section, key in (("training", "train_mode"), ("evaluation", "overlap_rule")):
        value = (params.get(section) or {}).get(key)
        if value is not None:
            tags[f"sketchseg.{section}.{key}"] = value
    mlflow.set_tags({k: str(v) for k, v in tags.items()})
    logger.info("MLflow run %s tagged as variant '%s'", run.info.run_id, variant)


def as_metric_items(values: dict[str, float], step: int = 0) -> dict[str, dict[str, float]]:
    """``{name: value}`` -> the ``{name: {"value", "step"}}`` form kedro-mlflow's metric datasets log."""
    return {k: {"value": float(v), "step": step} for k, v in values.items()}
