"""The model passes behind the report (torch, no Kedro): predictions for the overlay grid and the
single-category threshold sweep (S4.3) over annotated sketches.

Both take an :class:`sketchseg.data.annotated.AnnotatedSketches` data set, so the sketches are
rendered, labelled and given their categories exactly as in the evaluation. :func:`report_model_passes`
runs both for the report from one loaded checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from sketchseg.progress import progress

from sketchseg.data.annotated import AnnotatedSketches
from sketchseg.engine.config import EvalConfig
from sketchseg.engine.evaluate import annotated_set
from sketchseg.engine.metrics import pixel_accuracy
from sketchseg.engine.runtime import autocast, resolve_device
from sketchseg.model.checkpoint import load_model_from_checkpoint
from sketchseg.model.config import ModelConfig
from sketchseg.reporting.analysis import sketch_threshold_sweep, sweep_table
from sketchseg.reporting.overlays import OverlaySample

logger = logging.getLogger(__name__)


def choose_indices(n_items: int, n_choose: int, seed: int) -> list[int]:
    """``n_choose`` distinct indices of ``range(n_items)`` drawn with ``seed``, sorted."""
    if n_choose < 0:
        raise ValueError(f"cannot choose {n_choose} items")
    k = min(int(n_choose), int(n_items))
    rng = np.random.default_rng(int(seed))
    return sorted(int(i) for i in rng.choice(int(n_items), size=k, replace=False)) if k else []


def _batches(indices: Sequence[int], size: int) -> list[list[int]]:
    size = max(int(size), 1)
    return [list(indices[i : i + size]) for i in range(0, len(indices), size)]


@torch.no_grad()
def predict_samples(
    model: torch.nn.Module,
    dataset: AnnotatedSketches,
    indices: Sequence[int],
    *,
    device: torch.device,
    batch_size: int = 8,
    precision: str = "bf16",
) -> list[OverlaySample]:
    """Segment the sketches ``indices`` of ``dataset`` with their ground-truth categories
    (argmax of ``model.segment``, as the evaluation) for the overlay grid."""
    was_training = model.training
    model.eval()
    out: list[OverlaySample] = []
    for chunk in progress(_batches(list(indices), batch_size), desc="report overlays", unit="batch", leave=False):
        items = [dataset[i] for i in chunk]
        images = torch.stack([s.image for s in items]).to(device)
        with autocast(device, precision):
            maps = model.segment(images, [s.categories for s in items], size=dataset.render_size)
        for s, m in zip(items, maps):
            pred = m.float().argmax(dim=0).cpu().numpy().astype(np.int64)
            out.append(OverlaySample(s.sketch_id, list(s.categories), s.gt.astype(np.int64), pred,
                                     100.0 * pixel_accuracy(pred, s.gt)))
    model.train(was_training)
    return out


@torch.no_grad()
def sweep_accuracies(
    model: torch.nn.Module,
    dataset: AnnotatedSketches,
    thresholds: np.ndarray,
    *,
    device: torch.device,
    batch_size: int = 8,
    precision: str = "bf16",
    max_sketches: int | None = None,
    desc: str = "threshold sweep",
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Single category vs rest Acc@P of every (sketch, ground-truth category) pair at every
    threshold: prediction = min-max normalised map > t (``model.segment_normalised``), scored on
    stroke pixels. Returns ((P, T) fractions, [(sketch_id, category)] per row)."""
    was_training = model.training
    model.eval()
    n = len(dataset) if max_sketches is None else min(len(dataset), int(max_sketches))
    rows: list[np.ndarray] = []
    pairs: list[tuple[int, str]] = []
    for chunk in progress(_batches(list(range(n)), batch_size), desc=desc, unit="batch", leave=False):
        items = [dataset[i] for i in chunk]
        images = torch.stack([s.image for s in items]).to(device)
        with autocast(device, precision):
            maps = model.segment_normalised(images, [s.categories for s in items], size=dataset.render_size)
        for s, m in zip(items, maps):
            present, acc = sketch_threshold_sweep(m.float().cpu().numpy(), s.gt, thresholds)
            rows.append(acc)
            pairs.extend((s.sketch_id, s.categories[c]) for c in present)
    model.train(was_training)
    t = np.asarray(thresholds).reshape(-1)
    acc_all = np.concatenate(rows, axis=0) if rows else np.zeros((0, t.size))
    logger.info("%s: %d sketch-category pairs over %d sketches", desc, acc_all.shape[0], n)
    return acc_all, pairs


def report_model_passes(
    checkpoint: dict[str, Any],
    splits_table: pd.DataFrame,
    model_params: dict[str, Any],
    ecfg: EvalConfig,
    data: dict[str, Any],
    *,
    n_overlay_sketches: int,
    seed: int,
    thresholds: np.ndarray,
    max_sweep_sketches: int | None = None,
) -> tuple[list[OverlaySample], pd.DataFrame]:
    """Load ``checkpoint`` once; segment ``n_overlay_sketches`` test sketches drawn with ``seed`` for
    the overlay grid, and run the single-category threshold sweep on the annotated val and test
    sketches (at most ``max_sweep_sketches`` of each, spread over participants). Returns the
    overlay samples and the sweep table (:func:`~sketchseg.reporting.analysis.sweep_table`)."""
    # the checkpoint's architecture, conf's inference settings (evaluation.model_config: conf = conf's as it is)
    model, cfg, _ = load_model_from_checkpoint(checkpoint, ModelConfig.from_dict(model_params),
                                               config_from=ecfg.model_config)
    device = resolve_device(ecfg.device)
    model.to(device)
    batch_size, precision = int(ecfg.batch_size), ecfg.precision
    test_set, val_set = (annotated_set(splits_table, split, cfg.image_size, ecfg, data) for split in ("test", "val"))
    indices = choose_indices(len(test_set), int(n_overlay_sketches), int(seed))
    samples = predict_samples(model, test_set, indices, device=device, batch_size=batch_size, precision=precision)
    logger.info("overlays: %d of %d test sketches (seed %s)", len(samples), len(test_set), seed)

    per_split = {}
    for split, dataset in (("val", val_set), ("test", test_set)):
        if max_sweep_sketches is not None and int(max_sweep_sketches) < len(dataset):
            dataset = annotated_set(splits_table, split, cfg.image_size, ecfg, data, limit=int(max_sweep_sketches))
        acc, _ = sweep_accuracies(model, dataset, thresholds, device=device, batch_size=batch_size,
                                  precision=precision, desc=f"threshold sweep ({split})")
        per_split[split] = acc
    return samples, sweep_table(per_split, thresholds)
