"""Fit the two-level model and keep the checkpoint with the best validation mIoU (§4.3): glue
between the catalog and :func:`sketchseg.engine.run.train_and_select`."""

from __future__ import annotations

import logging
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from sketchseg import tracking  # noqa: E402
from sketchseg.engine.config import EvalConfig, TrainConfig  # noqa: E402
from sketchseg.engine.run import check_prompt_template, train_and_select  # noqa: E402,F401 (re-exported)
from sketchseg.model.config import ModelConfig  # noqa: E402
from sketchseg.reporting.figures import training_curves_figure  # noqa: E402

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


def plot_training_curves(history: pd.DataFrame) -> plt.Figure:
    """Per-epoch losses, validation metrics and the learnable threshold."""
    return training_curves_figure(history)
