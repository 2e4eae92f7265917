"""The few lines a finished training run ends on: test scores, where the checkpoint and the MLflow
run are, and what to run next (logged by the project hooks after a pipeline that scores the test set).

The checkpoint's path comes from the catalog entry the evaluation scored (``best_checkpoint`` or
``last_checkpoint``, as ``test_metrics.json`` says), the run's ids from MLflow: nothing hard-coded.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sketchseg.tracking import ui_url

logger = logging.getLogger(__name__)

METRICS_DATASET = "test_metrics"
_SCORES = (("test_miou", "mIoU"), ("test_pixel_acc", "Acc@P"), ("test_stroke_acc", "Acc@S"))


def _shown(path: str | Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _ui_command(tracking_uri: str) -> str:
    """How to look at the runs: ``mlflow ui`` on a local store, the server's address otherwise."""
    if tracking_uri.startswith("sqlite:///"):
        db = tracking_uri[len("sqlite:///"):]
        return f"mlflow ui --backend-store-uri sqlite:///{_shown(db)}"
    if tracking_uri.startswith(("http://", "https://")):
        from sketchseg.run_guard import redact

        return f"open {redact(tracking_uri)}"
    return f"mlflow ui --backend-store-uri {tracking_uri}"


def summary_lines(metrics: Mapping[str, Any], checkpoint: str | None, *, run_id: str | None = None,
                  run_name: str | None = None, experiment_id: str | None = None,
                  experiment_name: str | None = None, tracking_uri: str | None = None) -> list[str]:
    """The summary as log lines (see the module docstring)."""
    scores = ", ".join(f"{label} {float(metrics[key]):.2f}" for key, label in _SCORES if key in metrics)
    n = metrics.get("n_test_sketches")
    which = metrics.get("checkpoint")
    epoch = metrics.get("checkpoint_epoch")
    lines = [f"test set{f' ({n} sketches)' if n is not None else ''}: {scores or 'no scores'}"
             + (f" with the {which} checkpoint" if which else "") + (f" (epoch {epoch})" if epoch is not None else "")]
    if checkpoint:
        lines.append(f"checkpoint: {_shown(checkpoint)}")
    if run_id:
        where = f" in experiment '{experiment_name}'" if experiment_name else ""
        lines.append(f"MLflow run {run_id}{f' ({run_name})' if run_name else ''}{where}"
                     + (f", store {tracking_uri}" if tracking_uri else ""))
    if tracking_uri:
        view = f", then open {ui_url(experiment_id, run_id)}" if tracking_uri.startswith("sqlite:") else ""
        lines.append(f"next: {_ui_command(tracking_uri)}{view}")
    app = "sketchseg app" + (f" --checkpoint {_shown(checkpoint)}" if checkpoint else "")
    lines.append(f"next: {app}  (draw or upload a sketch, name its objects, see it segmented)")
    return lines


def _checkpoint_path(catalog: Any, which: str | None) -> str | None:
    for name in ([f"{which}_checkpoint"] if which else []) + ["best_checkpoint"]:
        try:
            dataset = catalog.get(name)
        except Exception:  # noqa: BLE001 - no such entry
            dataset = None
        path = getattr(dataset, "_filepath", None) if dataset is not None else None
        if path:
            return str(path)
    return None


def log_run_summary(catalog: Any, run_id: str | None) -> list[str]:
    """Log (INFO) and return the summary of a run whose catalog holds ``test_metrics``."""
    try:
        metrics = dict(catalog.get(METRICS_DATASET).load() or {})  # not catalog.load: no "Loading data" line
    except Exception as exc:  # noqa: BLE001 - a summary is no reason to fail a finished run
        logger.debug("no run summary: %s", exc)
        return []
    info: dict[str, Any] = {}
    if run_id:
        try:
            import mlflow

            run = mlflow.MlflowClient().get_run(run_id)
            experiment = mlflow.MlflowClient().get_experiment(run.info.experiment_id)
            info = {"run_name": run.info.run_name, "experiment_id": run.info.experiment_id,
                    "experiment_name": experiment.name, "tracking_uri": mlflow.get_tracking_uri()}
        except Exception as exc:  # noqa: BLE001 - tracking may have stopped: the rest still helps
            logger.debug("run summary without MLflow details: %s", exc)
    lines = summary_lines(metrics, _checkpoint_path(catalog, metrics.get("checkpoint")), run_id=run_id, **info)
    for line in lines:
        logger.info("%s", line)
    return lines
