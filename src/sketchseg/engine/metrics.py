"""Segmentation metrics (paper §4.2, S2.3.1 / Tab. S5; official-code-notes "Evaluation protocol").

Only stroke pixels are scored (ground truth ``-1`` = background, excluded). mIoU, Acc@P and Acc@S
are computed per sketch, then averaged over sketches by :func:`aggregate` (the authors'
evaluation protocol, from which the paper's numbers come):

* Acc@P  = correct stroke pixels / stroke pixels.
* Acc@S  = fraction of labelled strokes whose majority predicted label over the stroke's own
  pixels (ties -> lowest category index) equals the stroke label; a stroke that renders to no pixel
  counts as wrong, as in the evaluation protocol (``empty_strokes="skip"`` leaves it out).
* mIoU   = mean IoU over the classes with union > 0 (a class predicted but absent from the ground
  truth has IoU 0 and counts).

MeanAcc and FWIoU are the paper's per-category measures (S2.3.1), over the whole set (the authors'
code has neither): :func:`class_pooled_metrics` of :func:`per_category_table`, categories by name:

* MeanAcc = mean over the set's ground-truth categories of their pixel accuracy (Acc@P of each
  category: its correctly labelled pixels / its pixels, over every sketch).
* FWIoU  = sum over those categories of (their share of all ground-truth pixels) x their IoU.

``sketch_metrics`` also gives a sketch's own MeanAcc / FWIoU (its classes only): the per-sketch
table's columns.

Pure numpy; vectorised with ``np.bincount``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sketchseg.data.ground_truth import as_int_map, stroke_pixel_pairs
from sketchseg.errors import SketchSegDataError

logger = logging.getLogger(__name__)

METRIC_NAMES = ("miou", "pixel_acc", "stroke_acc", "mean_acc", "fwiou")


@dataclass
class SketchScores:
    """Scores of one sketch (fractions in [0, 1]; NaN when undefined) and its per-class counts.

    Per-class arrays have length ``n_categories``: ``intersection`` (= ``correct``, pixels of the class
    labelled right), ``union``, ``gt_pixels``, ``pred_pixels`` - all over stroke pixels only.
    """

    miou: float
    pixel_acc: float
    stroke_acc: float
    mean_acc: float
    fwiou: float
    n_pixels: int
    n_strokes: int
    n_strokes_hidden: int
    intersection: np.ndarray = field(repr=False)
    union: np.ndarray = field(repr=False)
    gt_pixels: np.ndarray = field(repr=False)
    pred_pixels: np.ndarray = field(repr=False)
    correct: np.ndarray = field(repr=False)

    def as_row(self) -> dict[str, float | int]:
        """Scalar fields as a flat dict (one row of a per-sketch table)."""
        return {
            "miou": self.miou,
            "pixel_acc": self.pixel_acc,
            "stroke_acc": self.stroke_acc,
            "mean_acc": self.mean_acc,
            "fwiou": self.fwiou,
            "n_pixels": self.n_pixels,
            "n_strokes": self.n_strokes,
            "n_strokes_hidden": self.n_strokes_hidden,
        }


def pixel_accuracy(pred: np.ndarray, gt: np.ndarray) -> float:
    """Acc@P of one sketch: correct stroke pixels / stroke pixels (``gt >= 0``), a fraction; NaN
    without any stroke pixel. The one definition: :func:`sketch_metrics` and the report use it."""
    gt = as_int_map(gt, "gt")
    pred = as_int_map(pred, "pred", gt.shape)
    scored = gt >= 0
    n_pixels = int(np.count_nonzero(scored))
    return float(np.count_nonzero(pred[scored] == gt[scored]) / n_pixels) if n_pixels else float("nan")


def sketch_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    stroke_map: np.ndarray,
    stroke_labels: np.ndarray,
    n_categories: int,
    stroke_pixels: np.ndarray | None = None,
    empty_strokes: str = "wrong",
) -> SketchScores:
    """Score one sketch.

    Parameters
    ----------
    pred, gt
        (H, W) integer class indices; ``gt == -1`` is background (not scored). ``pred`` is read on
        stroke pixels only and must be in ``[0, n_categories)`` there.
    stroke_map
        (H, W) index of the stroke covering each pixel, -1 background.
    stroke_labels
        (S,) class index of each stroke; a negative label marks an unlabelled stroke (not scored).
    n_categories
        Number of categories of this sketch.
    stroke_pixels
        ``(2, P)`` stroke index and flat pixel index of every stroke's OWN pixels
        (``data.strokes.stroke_pixels``). Acc@S votes over them: a stroke's label is the most
        frequent prediction over its own pixels, also where other strokes cover it, and every
        labelled stroke counts (the protocol's "correct strokes / total strokes"). Without them a
        stroke votes with the pixels it owns in ``stroke_map``, and strokes hidden entirely under
        others are not scored (``n_strokes_hidden``).
    empty_strokes
        With ``stroke_pixels``: how a labelled stroke with no pixel at all (drawn outside the frame,
        or on its first row or column) counts in Acc@S: ``wrong`` (the evaluation protocol: it
        votes "blank", which is never its label) or ``skip`` (not scored).
    """
    if empty_strokes not in ("wrong", "skip"):
        raise SketchSegDataError(f"empty_strokes must be 'wrong' or 'skip', got {empty_strokes!r}")
    if int(n_categories) < 1:
        raise SketchSegDataError(f"n_categories must be >= 1, got {n_categories}")
    n = int(n_categories)
    gt = as_int_map(gt, "gt")
    pred = as_int_map(pred, "pred", gt.shape)
    smap = as_int_map(stroke_map, "stroke_map", gt.shape)
    labels = np.asarray(stroke_labels, dtype=np.int64).reshape(-1)
    n_strokes_total = len(labels)

    if gt.size and (gt.min() < -1 or gt.max() >= n):
        raise SketchSegDataError(f"gt labels must be in [-1, {n}), got [{gt.min()}, {gt.max()}]")
    if labels.size and labels.max() >= n:
        raise SketchSegDataError(f"stroke_labels must be < n_categories={n}, got max {labels.max()}")
    if smap.size and (smap.min() < -1 or smap.max() >= n_strokes_total):
        raise SketchSegDataError(
            f"stroke_map indices must be in [-1, {n_strokes_total}), got [{smap.min()}, {smap.max()}]"
        )

    # ---------------------------------------------------------------- pixel confusion
    scored = gt >= 0
    g = gt[scored]
    p = pred[scored]
    if p.size and (p.min() < 0 or p.max() >= n):
        raise SketchSegDataError(f"pred labels on stroke pixels must be in [0, {n}), got [{p.min()}, {p.max()}]")
    conf = np.bincount(g * n + p, minlength=n * n).reshape(n, n)  # rows gt, cols pred
    inter = np.diag(conf).astype(np.int64)
    gt_px = conf.sum(axis=1).astype(np.int64)
    pred_px = conf.sum(axis=0).astype(np.int64)
    union = gt_px + pred_px - inter
    n_pixels = int(g.size)

    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
        cls_acc = np.where(gt_px > 0, inter / np.maximum(gt_px, 1), np.nan)
    if n_pixels:
        pixel_acc = pixel_accuracy(pred, gt)  # = inter.sum() / n_pixels
        miou = float(np.nanmean(iou))
        mean_acc = float(np.nanmean(cls_acc))
        present = gt_px > 0
        fwiou = float(np.sum(gt_px[present] / n_pixels * iou[present]))
    else:
        pixel_acc = miou = mean_acc = fwiou = float("nan")

    # ---------------------------------------------------------------- stroke majority vote
    labelled = labels >= 0
    if stroke_pixels is not None:
        pairs = stroke_pixel_pairs(stroke_pixels, n_strokes_total, pred.shape)
        keep = labelled[pairs[0]] if pairs.size else np.zeros(0, dtype=bool)
        s_idx, s_pred = pairs[0][keep], pred.reshape(-1)[pairs[1][keep]]
    else:
        on_stroke = smap >= 0
        on_stroke &= np.append(labelled, False)[smap]  # pixels of labelled strokes only
        s_idx = smap[on_stroke]
        s_pred = pred[on_stroke]
    if s_pred.size and (s_pred.min() < 0 or s_pred.max() >= n):
        raise SketchSegDataError(
            f"pred labels on stroke_map pixels must be in [0, {n}), got [{s_pred.min()}, {s_pred.max()}]"
        )
    votes = np.bincount(s_idx * n + s_pred, minlength=n_strokes_total * n).reshape(n_strokes_total, n)
    visible = votes.sum(axis=1) > 0
    winner = votes.argmax(axis=1) if n_strokes_total else np.zeros(0, dtype=np.int64)  # ties -> lowest
    scored_strokes = visible & labelled
    if stroke_pixels is not None and empty_strokes == "wrong":
        scored_strokes = labelled.copy()  # a stroke with no pixel is scored, and wrong
    n_scored = int(scored_strokes.sum())
    correct = visible & (winner == labels)
    stroke_acc = float(np.mean(correct[scored_strokes])) if n_scored else float("nan")
    owned = np.bincount(smap[smap >= 0], minlength=n_strokes_total) > 0 if n_strokes_total else np.zeros(0, bool)
    n_hidden = int((~owned & labelled).sum())  # strokes with no pixel of their own in stroke_map

    return SketchScores(
        miou=miou,
        pixel_acc=pixel_acc,
        stroke_acc=stroke_acc,
        mean_acc=mean_acc,
        fwiou=fwiou,
        n_pixels=n_pixels,
        n_strokes=n_scored,
        n_strokes_hidden=n_hidden,
        intersection=inter,
        union=union,
        gt_pixels=gt_px,
        pred_pixels=pred_px,
        correct=inter.copy(),
    )


def aggregate(scores: Sequence[SketchScores]) -> dict[str, float]:
    """Average each metric over sketches (per-sketch protocol), in percent. Evaluation replaces
    ``mean_acc`` / ``fwiou`` by the set-level :func:`class_pooled_metrics` (S2.3.1).

    Sketches where a metric is undefined (NaN: no stroke pixel / no visible stroke) are left out
    of that metric's mean. Also returns ``n_sketches``.
    """
    if len(scores) == 0:
        raise SketchSegDataError("no sketch scores to aggregate")
    out: dict[str, float] = {}
    for name in METRIC_NAMES:
        values = np.array([getattr(s, name) for s in scores], dtype=np.float64)
        n_nan = int(np.isnan(values).sum())
        if n_nan:
            logger.warning("%s undefined for %d of %d sketches; averaged over the rest", name, n_nan, len(values))
        out[name] = float(np.nanmean(values) * 100.0) if n_nan < len(values) else float("nan")
    out["n_sketches"] = float(len(scores))
    return out


def class_pooled_metrics(per_category: pd.DataFrame) -> dict[str, float]:
    """MeanAcc and FWIoU of the set (S2.3.1), in percent, from :func:`per_category_table`: the mean
    of the categories' pooled pixel accuracy, and their pooled IoU weighted by their share of the
    ground-truth pixels. Categories without ground-truth pixels (only predicted) weigh nothing."""
    if per_category is None or len(per_category) == 0:
        return {"mean_acc": float("nan"), "fwiou": float("nan")}
    gt = per_category["gt_pixels"].to_numpy(dtype=np.float64)
    present = gt > 0
    if not present.any():
        return {"mean_acc": float("nan"), "fwiou": float("nan")}
    acc = per_category["pixel_acc"].to_numpy(dtype=np.float64)[present]
    iou = per_category["iou"].to_numpy(dtype=np.float64)[present]
    weights = gt[present] / gt[present].sum()
    return {"mean_acc": float(acc.mean() * 100.0), "fwiou": float(np.sum(weights * iou) * 100.0)}


def per_category_table(records: Sequence[tuple[Sequence[str], SketchScores]]) -> pd.DataFrame:
    """Pool per-class counts over sketches by category name (Fig. S11 / §S2.2).

    Each record is (class names of that sketch, index -> name; its scores). Returns columns
    category, n_sketches (sketches where it is in the ground truth), gt_pixels, pixel_acc
    (correct / gt_pixels), iou (pooled intersection / pooled union); one row per category with a
    non-empty union, sorted by gt_pixels desc then name.
    """
    names: list[str] = []
    parts: list[np.ndarray] = []
    for i, (classes, sc) in enumerate(records):
        if len(classes) != len(sc.gt_pixels):
            raise SketchSegDataError(
                f"record {i}: {len(classes)} class names for {len(sc.gt_pixels)} scored classes"
            )
        names.extend(str(c) for c in classes)
        parts.append(
            np.stack(
                [(sc.gt_pixels > 0).astype(np.int64), sc.gt_pixels, sc.correct, sc.intersection, sc.union], axis=1
            )
        )
    columns = ["category", "n_sketches", "gt_pixels", "pixel_acc", "iou"]
    if not names:
        return pd.DataFrame(columns=columns)
    df = pd.DataFrame(np.concatenate(parts), columns=["n_sketches", "gt_pixels", "correct", "intersection", "union"])
    df.insert(0, "category", names)
    pooled = df.groupby("category", sort=True).sum()
    pooled = pooled[pooled["union"] > 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled["pixel_acc"] = np.where(pooled["gt_pixels"] > 0, pooled["correct"] / pooled["gt_pixels"], np.nan)
        pooled["iou"] = pooled["intersection"] / pooled["union"]
    out = pooled.reset_index()[columns]
    out = out.sort_values(["gt_pixels", "category"], ascending=[False, True], kind="mergesort").reset_index(drop=True)
    return out.astype({"n_sketches": "int64", "gt_pixels": "int64", "pixel_acc": "float64", "iou": "float64"})
