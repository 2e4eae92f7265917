"""Test-set evaluation of the chosen checkpoint (paper §4.2, reference protocol): glue between the
catalog and :func:`sketchseg.engine.evaluate.evaluate_checkpoint`."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from sketchseg import tracking
from sketchseg.engine import scoring
from sketchseg.engine.config import EvalConfig
from sketchseg.engine.evaluate import evaluate_checkpoint

logger = logging.getLogger(__name__)


def choose_checkpoint(best: dict[str, Any], last: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint ``evaluation.checkpoint`` names (:func:`sketchseg.engine.scoring.choose_checkpoint`)."""
    return scoring.choose_checkpoint(best, last, EvalConfig.from_dict(evaluation))


def evaluate_test(
    checkpoint: dict[str, Any],
    splits_table: pd.DataFrame,
    model_params: dict[str, Any],
    evaluation: dict[str, Any],
    training: dict[str, Any],
    data: dict[str, Any],
) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Score the chosen checkpoint on the annotated test split (metrics logged as ``test_*``); it
    runs on ``training.device`` with ``training.precision`` (:meth:`EvalConfig.from_params`)."""
    record, result = evaluate_checkpoint(checkpoint, splits_table, model_params,
                                         EvalConfig.from_params(evaluation, training), data)
    meta = checkpoint.get("metadata", {})
    tracking.log_metrics(result.prefixed("test"))
    tracking.set_tags({"sketchseg.checkpoint_epoch": meta.get("epoch", "?"),
                       "sketchseg.checkpoint": meta.get("kind", "?")})
    return record, result.per_sketch, result.per_category
