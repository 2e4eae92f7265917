"""What the test scores of a checkpoint depend on, and the choice of the checkpoint to score.

``report`` re-runs the model and must score exactly as the evaluation whose tables it draws:
``test_metrics.json`` records :func:`scoring_settings`, and :func:`check_same_scoring` refuses
tables scored otherwise.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from sketchseg.engine.config import CHECKPOINT_CHOICES, EvalConfig
from sketchseg.errors import SketchSegConfigError
from sketchseg.model.config import ModelConfig

logger = logging.getLogger(__name__)

#: what decides the test scores of a given checkpoint: ``report`` re-runs the model and must score
#: exactly as the evaluation whose tables it draws (``check_same_scoring``)
SCORING_MODEL_KEYS = ("clip_model", "pretrained", "image_size", "vv_blocks", "vv_inference", "upsample_mode",
                      "inference_normalization", "inference_prompts", "ensemble_subtract_empty", "prompt_template",
                      "test_time_cross_attention", "feature_normalization")
SCORING_EVALUATION_KEYS = ("checkpoint", "render_size", "overlap_rule", "empty_strokes")
#: how annotated sketches are rendered for scoring; tables from before the protocol's rendering
#: (sketchseg < 0.2: floored, square-dilated lines) recorded no such key and are refused
RENDERING = "fscoco-seg-protocol"

__all__ = ["CHECKPOINT_CHOICES", "SCORING_EVALUATION_KEYS", "SCORING_MODEL_KEYS", "check_same_scoring",
           "choose_checkpoint", "scoring_settings"]


def _eval_config(evaluation: EvalConfig | Mapping[str, Any]) -> EvalConfig:
    return evaluation if isinstance(evaluation, EvalConfig) else EvalConfig.from_dict(evaluation)


def scoring_settings(cfg: ModelConfig, evaluation: EvalConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The model and evaluation settings that the test scores of a checkpoint depend on."""
    ecfg = _eval_config(evaluation)
    out: dict[str, Any] = {f"model.{k}": getattr(cfg, k) for k in SCORING_MODEL_KEYS}
    out.update({f"evaluation.{k}": getattr(ecfg, k) for k in SCORING_EVALUATION_KEYS})
    out["evaluation.rendering"] = RENDERING
    return out


def check_same_scoring(test_metrics: dict[str, Any], cfg: ModelConfig, evaluation: EvalConfig | Mapping[str, Any],
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
                f"val mIoU {test_metrics.get('checkpoint_val_miou')}) than the {_eval_config(evaluation).checkpoint} "
                f"checkpoint now on disk (epoch {epoch}, "
                f"val mIoU {checkpoint_metadata.get('val_miou')}); re-run --pipelines=evaluation first"
            )
    now = scoring_settings(cfg, evaluation)
    # keys an older file did not record cannot be checked (no refusal for them), except the
    # rendering: a file without it was scored with the renderer before the protocol's
    if "evaluation.render_size" in recorded and "evaluation.rendering" not in recorded:
        recorded = {**recorded, "evaluation.rendering": "floored lines, square dilation (before the protocol rendering)"}
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


def choose_checkpoint(best: dict[str, Any], last: dict[str, Any],
                      evaluation: EvalConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint to score: ``evaluation.checkpoint`` ``best`` (chosen on validation, §4.3; the
    default) or ``last`` (the final epoch's, Tab. S9 "Last": no annotated validation set needed)."""
    choice = _eval_config(evaluation).checkpoint  # checked by EvalConfig.from_dict
    chosen = best if choice == "best" else last
    meta = dict(chosen.get("metadata") or {})
    logger.info("scoring the %s checkpoint (epoch %s)", choice, meta.get("epoch", "?"))
    return chosen
