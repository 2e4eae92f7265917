"""Fit the two-level model and keep the checkpoint with the best validation mIoU (§4.3): glue
between the catalog and :func:`sketchseg.engine.run.train_and_select`."""

from __future__ import annotations

import logging
from typing import Any

from matplotlib.figure import Figure
import pandas as pd

from sketchseg import tracking
from sketchseg.engine.config import EvalConfig, TrainConfig
from sketchseg.engine.run import train_and_select
from sketchseg.model.config import ModelConfig
from sketchseg.reporting.figures import training_curves_figure

logger = logging.getLogger(__name__)


def train_model(
    splits_table: pd.DataFrame,
    prompts_table: pd.DataFrame,
    model_params: dict[str, Any],
    training: dict[str, Any],
    evaluation: dict[str, Any],
    data: dict[str, Any],
    experiment: dict[str, Any],
) -> tuple[dict, dict, pd.DataFrame]:
    """Train, validating on the annotated val split after every epoch (curves logged to MLflow)."""
    return train_and_select(
        splits_table, prompts_table, ModelConfig.from_dict(model_params), TrainConfig.from_dict(training),
        EvalConfig.from_params(evaluation, training), data,
        variant=str(experiment.get("variant", "ours")), log=tracking,
    )


def plot_training_curves(history: pd.DataFrame) -> Figure:
    """Per-epoch losses, validation metrics and the learnable threshold."""
    return training_curves_figure(history)
