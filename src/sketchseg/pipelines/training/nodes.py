"""Fit the two-level model and keep the checkpoint with the best validation mIoU (§4.3)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from sketchseg import tracking  # noqa: E402
from sketchseg.data.annotated import annotated_split  # noqa: E402
from sketchseg.data.train_set import TrainSketches  # noqa: E402
from sketchseg.engine.runtime import seed_everything  # noqa: E402
from sketchseg.engine.train import TrainConfig, fit, load_training_state  # noqa: E402
from sketchseg.errors import SketchSegConfigError, SketchSegDataError  # noqa: E402
from sketchseg.model.checkpoint import FORMAT as CHECKPOINT_FORMAT  # noqa: E402
from sketchseg.model.config import ModelConfig  # noqa: E402
from sketchseg.model.model import build_model  # noqa: E402
from sketchseg.reporting.figures import training_curves_figure  # noqa: E402

logger = logging.getLogger(__name__)


def training_table(splits_table: pd.DataFrame, prompts_table: pd.DataFrame) -> pd.DataFrame:
    train = splits_table[splits_table["split"] == "train"]
    cols = ["sketch_id", "categories", "prompts", "no_noun"]
    return train.merge(prompts_table[cols], on="sketch_id", how="left", validate="one_to_one")


def check_prompt_template(table: pd.DataFrame, template: str) -> None:
    """Training prompts (built with ``prompts.template``) must be the prompts evaluation and
    segmentation build with ``model.prompt_template``; else training and inference disagree."""
    rows = table[~table["no_noun"].fillna(False).astype(bool)] if "no_noun" in table.columns else table
    for cats, prompts in zip(rows["categories"], rows["prompts"]):  # no-noun fallbacks: the caption itself
        for cat, prompt in zip(cats, prompts):
            if prompt != template.format(cat):
                raise SketchSegConfigError(
                    f"training prompt {prompt!r} for category {cat!r} was not built with model.prompt_template "
                    f"{template!r}, which evaluation and segmentation use: set prompts.template and "
                    "model.prompt_template to the same template"
                )


def checkpoint_metadata(cfg: ModelConfig, *, epoch: int, metric: float, variant: str, kind: str) -> dict[str, str]:
    return {
        "format": CHECKPOINT_FORMAT,
        "model_config": json.dumps(cfg.to_dict(), sort_keys=True),
        "epoch": str(epoch),
        "val_miou": f"{metric:.6f}",
        "variant": variant,
        "kind": kind,
    }


def train_model(
    splits_table: pd.DataFrame,
    prompts_table: pd.DataFrame,
    model_params: dict[str, Any],
    training: dict[str, Any],
    evaluation: dict[str, Any],
    data: dict[str, Any],
    experiment: dict[str, Any],
) -> tuple[dict, dict, pd.DataFrame]:
    """Train, validating on the annotated val split after every epoch."""
    cfg = ModelConfig.from_dict(model_params)
    tcfg = TrainConfig.from_dict(training)
    seed_everything(tcfg.seed)  # the added modules (prompts, cross-attention) initialise from it
    model = build_model(cfg)
    counts = model.parameter_counts()
    logger.info("parameters: %s trainable of %s", f"{counts['trainable']:,}", f"{counts['total']:,}")
    tracking.log_metrics({"params_trainable": counts["trainable"], "params_total": counts["total"]})

    table = training_table(splits_table, prompts_table)
    check_prompt_template(table, cfg.prompt_template)
    train_set = TrainSketches(
        table,
        image_size=cfg.image_size,
        max_categories=tcfg.max_categories_per_sketch,
        seed=tcfg.seed,
    )
    val_set = annotated_split(splits_table, "val", cfg.image_size, evaluation, data, tcfg.max_val_sketches)
    logger.info("training on %d sketches, validating on %d annotated sketches", len(train_set), len(val_set))
    if tcfg.resume and tcfg.state_path and Path(tcfg.state_path).is_file():
        # a resumed run is a new MLflow run: give it the curves of the epochs it continues from
        for row in load_training_state(tcfg.state_path)["history"]:
            row = dict(row)
            tracking.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
        tracking.set_tags({"sketchseg.resumed_from": tcfg.state_path})
    result = fit(
        model,
        train_set,
        val_set,
        tcfg,
        eval_batch_size=int(evaluation["batch_size"]),
        eval_num_workers=int(evaluation.get("num_workers", 0)),
        on_epoch_end=lambda epoch, metrics: tracking.log_metrics(metrics, step=epoch),
    )
    tracking.log_metrics({"best_epoch": result.best_epoch, "best_val_miou": result.best_metric})
    tracking.set_tags({"sketchseg.best_epoch": result.best_epoch})
    variant = str(experiment.get("variant", "ours"))
    best = {"state": result.best_state,
            "metadata": checkpoint_metadata(cfg, epoch=result.best_epoch, metric=result.best_metric, variant=variant, kind="best")}
    last_metric = float(result.history.iloc[-1].get(tcfg.selection_metric, float("nan"))) if len(result.history) else float("nan")
    last = {"state": result.last_state,
            "metadata": checkpoint_metadata(cfg, epoch=result.last_epoch, metric=last_metric, variant=variant, kind="last")}
    logger.info("chosen checkpoint: epoch %d (%s %.2f)", result.best_epoch, tcfg.selection_metric, result.best_metric)
    return best, last, result.history


def plot_training_curves(history: pd.DataFrame) -> plt.Figure:
    """Per-epoch losses, validation metrics and the learnable threshold."""
    return training_curves_figure(history)
