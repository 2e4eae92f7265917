"""Thin MLflow helpers that do nothing when no run is active (unit tests, plain Python use).

A failing MLflow call (the tracking server went away mid-run) never costs the run: the first
failure logs one warning, :func:`stop_tracking` turns every later call into a no-op and tells its
listeners (:mod:`sketchseg.run_guard` switches kedro-mlflow's logging off), and the run goes on with
its local checkpoints, training state and results. :func:`reset_tracking` re-arms it for a new run.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_stopped: list[str] = []  # the reason tracking stopped in this run (empty while it works)
_listeners: list[Callable[[str], None]] = []


def tracking_stopped() -> str | None:
    """Why MLflow tracking stopped during this run, or None while it works."""
    return _stopped[0] if _stopped else None


def reset_tracking(listener: Callable[[str], None] | None = None) -> None:
    """A new run: tracking works again; ``listener(reason)`` is called once if it stops."""
    _stopped.clear()
    _listeners.clear()
    if listener is not None:
        _listeners.append(listener)


def stop_tracking(reason: str) -> None:
    """Stop MLflow tracking for the rest of this run (one warning; later calls do nothing)."""
    if _stopped:
        return
    reason = " ".join(str(reason).split())[:300]
    _stopped.append(reason)
    logger.warning("MLflow tracking stopped (%s); the run goes on without it: checkpoints, the training state "
                   "and results are still written locally", reason)
    for listener in list(_listeners):
        try:
            listener(reason)
        except Exception as exc:  # noqa: BLE001 - switching tracking off must not fail the run
            logger.debug("tracking listener failed: %s", exc)


def _active_run():
    try:
        import mlflow
    except ImportError:  # pragma: no cover - mlflow is a dependency
        return None, None
    if _stopped:
        return mlflow, None
    return mlflow, mlflow.active_run()


def _guarded(what: str, call: Callable[[], Any]) -> None:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - a tracking failure must not cost the training
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        stop_tracking(f"{what} failed: {type(exc).__name__}: {first_line}")


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log finite numeric metrics to the active MLflow run (no-op without one)."""
    mlflow, run = _active_run()
    if run is None:
        return
    clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
    if clean:
        _guarded("logging metrics", lambda: mlflow.log_metrics(clean, step=step))


def set_tags(tags: Mapping[str, Any]) -> None:
    mlflow, run = _active_run()
    if run is None:
        return
    _guarded("setting tags", lambda: mlflow.set_tags({k: str(v) for k, v in tags.items()}))


def active_run_id() -> str | None:
    """The id of the active MLflow run (None without one)."""
    _, run = _active_run()
    return None if run is None else str(run.info.run_id)


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    mlflow, run = _active_run()
    if run is None:
        return
    _guarded("logging an artifact", lambda: mlflow.log_artifact(str(path), artifact_path=artifact_path))


#: MLflow 3's UI tells model-training experiments from GenAI ones by the experiment tag
#: ``mlflow.experimentKind`` (``custom_model_development`` = "machine learning"). MLflow 3.17's UI
#: however follows its sidebar switch "GenAI / Model training" instead (``workflowType``: the URL
#: parameter, else the switch's last position kept by the browser, else GenAI): :func:`ui_url`
#: opens an experiment on its runs (tests/test_mlflow_ui.py; the experiments list's links do not
#: keep the parameter).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
UI_WORKFLOW = "workflowType=machine_learning"
DEFAULT_UI = "http://127.0.0.1:5000"
_UNCHOSEN_KINDS = ("", "no_inferred_type", "empty")


def ui_url(experiment_id: str | None = None, run_id: str | None = None, base: str = DEFAULT_UI) -> str:
    """The ``mlflow ui`` address of an experiment (or one of its runs) in the model-training view."""
    path = "#/experiments"
    if experiment_id is not None:
        path += f"/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    return f"{base.rstrip('/')}/{path}?{UI_WORKFLOW}"


def mark_experiment_as_model_training(experiment_id: str | None = None) -> bool:
    """Tag an experiment (default: the active run's) as a model-training one for the MLflow UI,
    unless it already has a kind someone chose (a kind the UI only inferred is replaced); True when
    the tag was set."""
    mlflow, run = _active_run()
    if experiment_id is None:
        if run is None:
            return False
        experiment_id = run.info.experiment_id
    client = mlflow.MlflowClient()
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
    _guarded("setting tags", lambda: mlflow.set_tags({k: str(v) for k, v in tags.items()}))
    logger.info("MLflow run %s tagged as variant '%s'", run.info.run_id, variant)


def as_metric_items(values: dict[str, float], step: int = 0) -> dict[str, dict[str, float]]:
    """``{name: value}`` -> the ``{name: {"value", "step"}}`` form kedro-mlflow's metric datasets log."""
    return {k: {"value": float(v), "step": step} for k, v in values.items()}


def end_stale_run(holder: Mapping[str, Any]) -> bool:
    """End KILLED the MLflow run of a lock ``holder`` whose process has ended without closing it
    (``kill -9``, a crash, a power cut): it would show RUNNING forever. Tagged
    ``sketchseg.end_reason``. True when a run was ended; a tracking failure only logs."""
    run_id = str(holder.get("mlflow_run_id") or "")
    if not run_id or tracking_stopped():
        return False
    try:
        import mlflow

        client = mlflow.MlflowClient()
        if client.get_run(run_id).info.status != "RUNNING":
            return False
        client.set_tag(run_id, "sketchseg.end_reason",
                       f"its process (pid {holder.get('pid')} on {holder.get('host')}) ended without closing the run; "
                       "ended by the next run of the same output folder")
        client.set_terminated(run_id, "KILLED")
    except Exception as exc:  # noqa: BLE001 - the new run matters more than the old run's status
        logger.warning("could not end the stale MLflow run %s as KILLED: %s", run_id, str(exc)[:200])
        return False
    logger.warning("MLflow run %s of the dead process %s ended KILLED", run_id, holder.get("pid"))
    return True
