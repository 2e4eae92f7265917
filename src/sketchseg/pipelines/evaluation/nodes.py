"""Test-set evaluation of the chosen checkpoint (paper §4.2, reference protocol)."""

from __future__ import annotations

import logging
import math
from typing import Any

import pandas as pd

from sketchseg import tracking
from sketchseg.engine.evaluate import evaluate_model
from sketchseg.engine.runtime import resolve_device
from sketchseg.engine.scoring import choose_checkpoint, scoring_settings
from sketchseg.model.checkpoint import load_model_from_checkpoint
from sketchseg.model.config import ModelConfig
from sketchseg.errors import SketchSegConfigError, SketchSegDataError
from sketchseg.data.annotated import annotated_split

logger = logging.getLogger(__name__)


def evaluate_test(
    checkpoint: dict[str, Any],
    splits_table: pd.DataFrame,
    model_params: dict[str, Any],
    evaluation: dict[str, Any],
    training: dict[str, Any],
    data: dict[str, Any],
) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Score the chosen checkpoint on the annotated test split (metrics logged as ``test_*``)."""
    n_test = int((splits_table["split"] == "test").sum())
    if not (splits_table["split"].eq("test") & splits_table["labels_json"].notna()).any():
        raise SketchSegDataError(
            f"no annotated test sketches to score ({n_test} test sketches, none with FS-COCO-seg stroke labels): "
            "check splits.mode / splits.test_participants and the FS-COCO-seg test folder"
        )
    model, cfg, _ = load_model_from_checkpoint(checkpoint, ModelConfig.from_dict(model_params))  # conf wins
    device = resolve_device(training.get("device", "auto"))
    model.to(device)
    test_set = annotated_split(splits_table, "test", cfg.image_size, evaluation, data)
    result = evaluate_model(
        model,
        test_set,
        device=device,
        batch_size=int(evaluation["batch_size"]),
        num_workers=int(evaluation.get("num_workers", 0)),
        precision=training.get("precision", "bf16"),
        desc="test",
    )
    metrics = result.prefixed("test")
    meta = checkpoint.get("metadata", {})
    report = {
        **metrics,
        "n_test_sketches": result.n_sketches,
        "checkpoint_epoch": int(meta.get("epoch", -1)),
        "checkpoint_val_miou": float(meta.get("val_miou", "nan")),
        "variant": meta.get("variant", ""),
        "checkpoint": meta.get("kind", ""),
        "scoring": scoring_settings(cfg, evaluation),
    }
    logger.info(
        "test: mIoU %.2f, Acc@P %.2f, Acc@S %.2f, MeanAcc %.2f, FWIoU %.2f on %d sketches (checkpoint of epoch %s)",
        metrics["test_miou"], metrics["test_pixel_acc"], metrics["test_stroke_acc"], metrics["test_mean_acc"],
        metrics["test_fwiou"], result.n_sketches, meta.get("epoch", "?"),
    )
    tracking.log_metrics(metrics)
    tracking.set_tags({"sketchseg.checkpoint_epoch": meta.get("epoch", "?"),
                       "sketchseg.checkpoint": meta.get("kind", "?")})
    return report, result.per_sketch, result.per_category
