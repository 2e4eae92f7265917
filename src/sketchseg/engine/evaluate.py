"""Evaluation loop: per-sketch mIoU / Acc@P / Acc@S / MeanAcc / FWIoU (reference protocol), the
annotated sets as ``evaluation`` renders them, and the test scoring of a checkpoint."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader
from sketchseg.progress import progress

from sketchseg.data.annotated import (
    AnnotatedSketches,
    annotated_split,
    check_data_root,
    class_order,
    collate_annotated,
)
from sketchseg.engine.config import EvalConfig
from sketchseg.engine.metrics import aggregate, class_pooled_metrics, per_category_table, sketch_metrics
from sketchseg.engine.runtime import autocast, cpu_reproducible, resolve_device
from sketchseg.engine.scoring import scoring_settings
from sketchseg.errors import SketchSegDataError
from sketchseg.model.checkpoint import load_model_from_checkpoint
from sketchseg.model.config import ModelConfig

logger = logging.getLogger(__name__)

METRIC_NAMES = {
    "miou": "miou",
    "pixel_acc": "pixel_acc",
    "stroke_acc": "stroke_acc",
    "mean_acc": "mean_acc",
    "fwiou": "fwiou",
}


@dataclass
class EvalResult:
    summary: dict[str, float]                 # percent, averaged over sketches
    per_sketch: pd.DataFrame
    per_category: pd.DataFrame
    n_sketches: int = 0
    extra: dict = field(default_factory=dict)

    def prefixed(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}_{k}": v for k, v in self.summary.items()}


@torch.no_grad()
def evaluate_model(
    model: torch.nn.Module,
    dataset: AnnotatedSketches,
    *,
    device: torch.device,
    batch_size: int = 16,
    num_workers: int = 0,
    precision: str = "bf16",
    desc: str = "evaluate",
) -> EvalResult:
    """Segment every annotated sketch with its own ground-truth categories and score it."""
    was_training = model.training
    model.eval()
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_annotated,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    rows, records = [], []
    for batch in progress(loader, desc=desc, unit="batch", leave=False):
        images = torch.stack([s.image for s in batch]).to(device, non_blocking=True)
        with autocast(device, precision):
            maps = model.segment(images, [s.categories for s in batch], size=dataset.render_size)
        for s, m in zip(batch, maps):
            pred = m.float().argmax(dim=0).cpu().numpy()
            scores = sketch_metrics(pred, s.gt, s.stroke_map, s.stroke_labels, n_categories=len(s.categories),
                                    stroke_pixels=s.stroke_pixels,
                                    empty_strokes=getattr(dataset, "empty_strokes", "wrong"))
            records.append((s.categories, scores))
            rows.append(
                {
                    "sketch_id": s.sketch_id,
                    "n_classes": len(s.categories),  # table columns as written before (test_per_sketch)
                    "classes": list(s.categories),
                    "miou": 100.0 * scores.miou,
                    "pixel_acc": 100.0 * scores.pixel_acc,
                    "stroke_acc": 100.0 * scores.stroke_acc,
                    "mean_acc": 100.0 * scores.mean_acc,
                    "fwiou": 100.0 * scores.fwiou,
                    "n_pixels": scores.n_pixels,
                    "n_strokes": scores.n_strokes,
                    "n_strokes_hidden": scores.n_strokes_hidden,
                }
            )
    if was_training:
        model.train()
    per_sketch = pd.DataFrame(rows)
    summary = aggregate([r[1] for r in records]) if records else {k: float("nan") for k in METRIC_NAMES}
    per_category = per_category_table(records) if records else pd.DataFrame()
    if records:  # MeanAcc / FWIoU per category over the set (S2.3.1); the rest per sketch
        summary.update(class_pooled_metrics(per_category))
    logger.info(
        "%s: %d sketches, mIoU %.2f, Acc@P %.2f, Acc@S %.2f",
        desc, len(rows), summary.get("miou", float("nan")), summary.get("pixel_acc", float("nan")),
        summary.get("stroke_acc", float("nan")),
    )
    return EvalResult(summary=summary, per_sketch=per_sketch, per_category=per_category, n_sketches=len(rows))


def annotated_set(splits_table: pd.DataFrame, split: str, image_size: int, ecfg: EvalConfig, data: dict[str, Any],
                  limit: int | None = None) -> AnnotatedSketches:
    """The annotated sketches of ``split`` (at most ``limit``) rendered and labelled as ``ecfg`` says,
    in FS-COCO-seg's category order (``data.fscoco_seg_root``), from ``data.fscoco_root``'s tables."""
    check_data_root(splits_table, data)  # before the category order is read
    return annotated_split(
        splits_table, split, image_size,
        render_size=ecfg.render_size, overlap_rule=ecfg.overlap_rule, empty_strokes=ecfg.empty_strokes,
        class_order=class_order(data), limit=limit,
    )


def evaluate_checkpoint(checkpoint: dict[str, Any], splits_table: pd.DataFrame, model_params: dict[str, Any],
                        ecfg: EvalConfig, data: dict[str, Any]) -> tuple[dict[str, Any], EvalResult]:
    """Score ``checkpoint`` (a catalogued ``{"state", "metadata"}``) on the annotated test split.

    Returns the ``test_metrics.json`` record (``test_*`` metrics, the checkpoint's epoch / val mIoU /
    variant / kind and the :func:`~sketchseg.engine.scoring.scoring_settings`) and the result tables.
    """
    n_test = int((splits_table["split"] == "test").sum())
    if not (splits_table["split"].eq("test") & splits_table["labels_json"].notna()).any():
        raise SketchSegDataError(
            f"no annotated test sketches to score ({n_test} test sketches, none with FS-COCO-seg stroke labels): "
            "check splits.mode / splits.test_participants and the FS-COCO-seg test folder"
        )
    # the checkpoint's architecture, conf's inference settings (evaluation.model_config: conf = conf's as it is)
    model, cfg, _ = load_model_from_checkpoint(checkpoint, ModelConfig.from_dict(model_params),
                                               config_from=ecfg.model_config)
    device = resolve_device(ecfg.device)
    model.to(device)
    test_set = annotated_set(splits_table, "test", cfg.image_size, ecfg, data)
    with cpu_reproducible(device, ecfg.num_threads):  # the threads training validated with
        result = evaluate_model(model, test_set, device=device, batch_size=int(ecfg.batch_size),
                                num_workers=int(ecfg.num_workers), precision=ecfg.precision, desc="test")
    metrics = result.prefixed("test")
    meta = checkpoint.get("metadata", {})
    record = {
        **metrics,
        "n_test_sketches": result.n_sketches,
        "checkpoint_epoch": int(meta.get("epoch", -1)),
        "checkpoint_val_miou": float(meta.get("val_miou", "nan")),
        "variant": meta.get("variant", ""),
        "checkpoint": meta.get("kind", ""),
        "scoring": scoring_settings(cfg, ecfg),
    }
    logger.info(
        "test: mIoU %.2f, Acc@P %.2f, Acc@S %.2f, MeanAcc %.2f, FWIoU %.2f on %d sketches (checkpoint of epoch %s)",
        metrics["test_miou"], metrics["test_pixel_acc"], metrics["test_stroke_acc"], metrics["test_mean_acc"],
        metrics["test_fwiou"], result.n_sketches, meta.get("epoch", "?"),
    )
    return record, result
