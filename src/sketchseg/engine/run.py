"""One training run as the ``fit_and_select_checkpoint`` node does it: the model, the training and
validation sets, :func:`~sketchseg.engine.train.fit`, and the best / last checkpoints with their
metadata. Experiment tracking is passed in (``log``: anything with ``log_metrics`` / ``set_tags``,
e.g. the :mod:`sketchseg.tracking` module), so the engine knows nothing of MLflow.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import torch

from sketchseg.data.train_set import TrainSketches
from sketchseg.engine.config import EvalConfig, TrainConfig
from sketchseg.engine.evaluate import annotated_set
from sketchseg.engine.runtime import seed_everything
from sketchseg.engine.state import data_fingerprint, lineage_differences, load_training_state, run_lineage, \
    saved_lineage
from sketchseg.errors import SketchSegConfigError
from sketchseg.engine.train import fit
from sketchseg.model.checkpoint import checkpoint_metadata as model_checkpoint_metadata
from sketchseg.model.config import ModelConfig
from sketchseg.model.model import SketchSegModel, build_model

logger = logging.getLogger(__name__)


class RunLog(Protocol):
    """Where a run's numbers and tags go (:mod:`sketchseg.tracking` fits)."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def set_tags(self, tags: Mapping[str, Any]) -> None: ...


class NoLog:
    """A :class:`RunLog` that drops everything."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        return None

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        return None


def training_table(splits_table: pd.DataFrame, prompts_table: pd.DataFrame) -> pd.DataFrame:
    """The train split's sketches with their categories and prompts."""
    train = splits_table[splits_table["split"] == "train"]
    cols = ["sketch_id", "categories", "prompts", "no_noun"]
    return train.merge(prompts_table[cols], on="sketch_id", how="left", validate="one_to_one")


def checkpoint_metadata(model: SketchSegModel, *, epoch: int, metric: float, variant: str, kind: str,
                        torch_threads: int | None = None) -> dict[str, str]:
    """The metadata stored with a checkpoint of ``model``: what ``model.checkpoint.checkpoint_metadata``
    records (format, model config, backbone fingerprints) plus epoch, val mIoU, variant, kind and the
    CPU threads it was trained with (the same seed reproduces it bit for bit only with as many)."""
    meta = {
        "epoch": str(epoch),
        "val_miou": f"{metric:.6f}",
        "variant": variant,
        "kind": kind,
    }
    if torch_threads is not None:
        meta["torch_threads"] = str(int(torch_threads))
    return model_checkpoint_metadata(model, meta)


def prepare_resume(tcfg: TrainConfig, lineage: Mapping[str, Any], log: RunLog) -> list[str]:
    """Compare the training state's lineage with this run's before anything is trained: a difference
    refuses the resume (one line listing the keys) unless ``training.resume_despite_changes``, which
    is then tagged on the run (``sketchseg.resume_changes``). Tags the run it continues
    (``sketchseg.resumed_from_run``, ``sketchseg.resumed_from``) and re-logs the earlier epochs'
    curves (a resumed run is a new MLflow run). Returns the differences."""
    state = load_training_state(tcfg.state_path)
    saved = saved_lineage(state)
    if saved is None:
        logger.warning("training state %s records no configuration (written by an older sketchseg): "
                       "resuming without checking what it was trained with", tcfg.state_path)
        differences: list[str] = []
    else:
        differences = lineage_differences(saved, lineage)
    if differences and not tcfg.resume_despite_changes:
        raise SketchSegConfigError(
            f"training.resume: {tcfg.state_path} was trained with other settings: {', '.join(differences)}; "
            "resume with the same settings, set training.resume=false to start afresh, or "
            "training.resume_despite_changes=true to go on anyway (recorded in MLflow)"
        )
    tags: dict[str, Any] = {"sketchseg.resumed_from": tcfg.state_path}
    if state.get("mlflow_run_id"):
        tags["sketchseg.resumed_from_run"] = state["mlflow_run_id"]
    if differences:
        logger.warning("resuming %s despite changed settings (training.resume_despite_changes): %s",
                       tcfg.state_path, ", ".join(differences))
        tags["sketchseg.resume_changes"] = ", ".join(differences)[:5000]
    log.set_tags(tags)
    for row in state["history"]:
        row = dict(row)
        log.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
    return differences


def train_and_select(
    splits_table: pd.DataFrame,
    prompts_table: pd.DataFrame,
    mcfg: ModelConfig,
    tcfg: TrainConfig,
    ecfg: EvalConfig,
    data: dict[str, Any],
    *,
    variant: str = "ours",
    log: RunLog | None = None,
) -> tuple[dict, dict, pd.DataFrame]:
    """Build the model, train it validating on the annotated val split after every epoch, and
    return the best and last checkpoints (``{"state", "metadata"}``) and the history."""
    log = log if log is not None else NoLog()
    table = training_table(splits_table, prompts_table)
    lineage = run_lineage(mcfg.to_dict(), asdict(tcfg), data_fingerprint(table))
    if tcfg.resume and tcfg.state_path and Path(tcfg.state_path).is_file():
        prepare_resume(tcfg, lineage, log)
    seed_everything(tcfg.seed)  # the added modules (prompts, cross-attention) initialise from it
    model = build_model(mcfg)
    counts = model.parameter_counts()
    logger.info("parameters: %s trainable of %s", f"{counts['trainable']:,}", f"{counts['total']:,}")
    log.log_metrics({"params_trainable": counts["trainable"], "params_total": counts["total"]})

    train_set = TrainSketches(table, image_size=mcfg.image_size, max_categories=tcfg.max_categories_per_sketch,
                              seed=tcfg.seed)
    val_set = annotated_set(splits_table, "val", mcfg.image_size, ecfg, data, tcfg.max_val_sketches)
    logger.info("training on %d sketches, validating on %d annotated sketches", len(train_set), len(val_set))
    run_id = getattr(log, "active_run_id", lambda: None)()
    result = fit(model, train_set, val_set, tcfg, eval_batch_size=int(ecfg.batch_size),
                 eval_num_workers=int(ecfg.num_workers),
                 on_epoch_end=lambda epoch, metrics: log.log_metrics(metrics, step=epoch),
                 lineage=lineage, run_id=run_id)
    threads = int(result.extra.get("torch_threads", torch.get_num_threads()))
    log.log_metrics({"best_epoch": result.best_epoch, "best_val_miou": result.best_metric})
    log.set_tags({"sketchseg.best_epoch": result.best_epoch, "sketchseg.torch_threads": threads})
    best = {"state": result.best_state,
            "metadata": checkpoint_metadata(model, epoch=result.best_epoch, metric=result.best_metric,
                                            variant=variant, kind="best", torch_threads=threads)}
    history = result.history
    last_metric = float(history.iloc[-1].get(tcfg.selection_metric, float("nan"))) if len(history) else float("nan")
    last = {"state": result.last_state,
            "metadata": checkpoint_metadata(model, epoch=result.last_epoch, metric=last_metric, variant=variant,
                                            kind="last", torch_threads=threads)}
    logger.info("chosen checkpoint: epoch %d (%s %.2f)", result.best_epoch, tcfg.selection_metric, result.best_metric)
    return best, last, history
