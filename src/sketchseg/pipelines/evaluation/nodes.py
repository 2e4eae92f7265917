"""Test-set evaluation of the chosen checkpoint (paper §4.2, reference protocol)."""

from __future__ import annotations

import logging
import math
from typing import Any

import pandas as pd

from sketchseg import tracking
from sketchseg.engine.evaluate import evaluate_model
from sketchseg.engine.runtime import resolve_device
from sketchseg.model.checkpoint import load_trainable_state
from sketchseg.model.config import ModelConfig
from sketchseg.model.model import build_model
from sketchseg.errors import SketchSegConfigError, SketchSegDataError
from sketchseg.pipelines.training.nodes import annotated_split

logger = logging.getLogger(__name__)


def load_model_from_checkpoint(checkpoint: dict[str, Any], model_params: dict[str, Any]):
    """Build the configured model and load a catalogued checkpoint into it (shapes and keys checked)."""
    cfg = ModelConfig.from_dict(model_params)
    model = build_model(cfg)
    load_trainable_state(model, checkpoint["state"], source=str(checkpoint.get("metadata", {}).get("kind", "checkpoint")))
    return model, cfg


#: what decides the test scores of a given checkpoint: ``report`` re-runs the model and must score
#: exactly as the evaluation whose tables it draws (``check_same_scoring``)
SCORING_MODEL_KEYS = ("clip_model", "pretrained", "image_size", "vv_blocks", "vv_inference", "upsample_mode",
                      "inference_normalization", "inference_prompts", "ensemble_subtract_empty", "prompt_template")
SCORING_EVALUATION_KEYS = ("checkpoint", "render_size", "thickness", "overlap_rule")
CHECKPOINT_CHOICES = ("best", "last")


def scoring_settings(cfg: ModelConfig, evaluation: dict[str, Any]) -> dict[str, Any]:
    """The model and evaluation settings that the test scores of a checkpoint depend on."""
    out: dict[str, Any] = {f"model.{k}": getattr(cfg, k) for k in SCORING_MODEL_KEYS}
    out.update({f"evaluation.{k}": evaluation.get(k) for k in SCORING_EVALUATION_KEYS})
    return out


def check_same_scoring(test_metrics: dict[str, Any], cfg: ModelConfig, evaluation: dict[str, Any],
                       checkpoint_metadata: dict[str, Any] | None = None) -> None:
    """Refuse to mix scoring setups: ``test_metrics`` (with the test tables beside it) must have
    been scored with the settings ``cfg`` / ``evaluation`` would score with now, and (given its
    metadata) from this checkpoint."""
    recorded = test_metrics.get("scoring")
    if not isinstance(recorded, dict):
        logger.warning("test_metrics.json records no scoring settings (written by an older sketchseg): "
                       "cannot check that the test tables were scored with the current settings")
        return
    if checkpoint_metadata is not None:
        epoch = int(checkpoint_metadata.get("epoch", -1))
        if epoch != int(test_metrics.get("checkpoint_epoch", -1)) or not _same_number(
                checkpoint_metadata.get("val_miou", "nan"), test_metrics.get("checkpoint_val_miou", float("nan"))):
            raise SketchSegConfigError(
                f"the test tables were scored from another checkpoint (epoch {test_metrics.get('checkpoint_epoch')}, "
                f"val mIoU {test_metrics.get('checkpoint_val_miou')}) than the {evaluation.get('checkpoint', 'best')} "
                f"checkpoint now on disk (epoch {epoch}, "
                f"val mIoU {checkpoint_metadata.get('val_miou')}); re-run --pipelines=evaluation first"
            )
    now = scoring_settings(cfg, evaluation)
    # keys an older file did not record cannot be checked (no refusal for them)
    differ = {k: (recorded[k], v) for k, v in now.items() if k in recorded and recorded[k] != v}
    if differ:
        listed = ", ".join(f"{k}: tables {a!r}, now {b!r}" for k, (a, b) in sorted(differ.items()))
        raise SketchSegConfigError(
            f"the test tables (test_metrics.json, test_per_sketch, test_per_category) were scored with other "
            f"settings than this run would use ({listed}); run with the tables' settings (--params), or re-run "
            "--pipelines=evaluation with these settings first"
        )


def _same_number(a: Any, b: Any) -> bool:
    try:
        x, y = float(a), float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)
    return (math.isnan(x) and math.isnan(y)) or abs(x - y) <= 1e-6 * max(1.0, abs(x))


def choose_checkpoint(best: dict[str, Any], last: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint to score: ``evaluation.checkpoint`` ``best`` (chosen on validation, §4.3; the
    default) or ``last`` (the final epoch's, Tab. S9 "Last": no annotated validation set needed)."""
    choice = evaluation.get("checkpoint", "best")
    if choice not in CHECKPOINT_CHOICES:
        raise SketchSegConfigError(f"evaluation.checkpoint must be one of {list(CHECKPOINT_CHOICES)}, got {choice!r}")
    chosen = best if choice == "best" else last
    meta = dict(chosen.get("metadata") or {})
    logger.info("scoring the %s checkpoint (epoch %s)", choice, meta.get("epoch", "?"))
    return chosen


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
    model, cfg = load_model_from_checkpoint(checkpoint, model_params)
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
