"""Analyses behind the report figures (paper S2.2 and S4.3); numpy / pandas only.

* :func:`pearson_correlation` - Eq. 5, written out from its sums.
* :func:`category_frequency_table` / :func:`frequency_correlations` - Fig. S11: per-category Acc@P
  of the test set beside how often each category occurs in the train and test sets, and the
  accuracy-frequency correlation.
* :func:`seen_unseen_accuracy` - S2.2 "generalization to new object categories": a test category
  is *seen* when it occurs among the categories extracted from the TRAINING captions.
* :func:`single_category_accuracy` / :func:`sketch_threshold_sweep` / :func:`sweep_table` /
  :func:`best_thresholds` - Fig. S14: Acc@P of isolating one category against the rest of the
  sketch with ``min-max map > t`` (§3.4), for a grid of thresholds ``t``.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from sketchseg.errors import SketchSegConfigError, SketchSegDataError

logger = logging.getLogger(__name__)

SWEEP_COLUMNS = ["split", "threshold", "pixel_acc", "n_pairs"]
CATEGORY_COLUMNS = [
    "category", "pixel_acc", "iou", "gt_pixels", "correct_pixels", "test_frequency", "train_frequency",
    "caption_count", "seen", "shown",
]


# --------------------------------------------------------------------------------------------------
# Eq. 5
# --------------------------------------------------------------------------------------------------
def pearson_correlation(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Eq. 5: ``(N Σxy - Σx Σy) / sqrt([N Σx² - (Σx)²][N Σy² - (Σy)²])``.

    Pairs where either value is not finite are left out; N is the number of remaining pairs.
    Returns NaN when N < 2 or when x or y is constant (the denominator is 0).
    """
    xa = np.asarray(x, dtype=np.float64).reshape(-1)
    ya = np.asarray(y, dtype=np.float64).reshape(-1)
    if xa.shape != ya.shape:
        raise ValueError(f"pearson_correlation needs x and y of the same length, got {xa.size} and {ya.size}")
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    n = float(xa.size)
    if n < 2:
        return float("nan")
    sx, sy = xa.sum(), ya.sum()
    sxy = (xa * ya).sum()
    sxx, syy = (xa * xa).sum(), (ya * ya).sum()
    var_x = n * sxx - sx * sx
    var_y = n * syy - sy * sy
    # sums of squares of near-constant data can come out a hair below zero or at rounding noise
    tol = 1e-12 * max(n * sxx, sx * sx, 1e-300)
    tol_y = 1e-12 * max(n * syy, sy * sy, 1e-300)
    if var_x <= tol or var_y <= tol_y:
        return float("nan")
    return float((n * sxy - sx * sy) / math.sqrt(var_x * var_y))


# --------------------------------------------------------------------------------------------------
# category names and frequencies (S2.2, Fig. S11)
# --------------------------------------------------------------------------------------------------
def normalise_category(name: Any) -> str:
    """Lower case, underscores as spaces, single spaces: how caption and label names are matched."""
    return " ".join(str(name).replace("_", " ").lower().split())


def caption_category_counts(prompts_table: pd.DataFrame, splits: Iterable[str] | None = None) -> pd.Series:
    """Number of sketches whose caption yields each category (``categories`` column of the
    ``sketch_prompts`` table), optionally only over the sketches of ``splits``.

    Returns an int64 Series indexed by normalised category name (a category counts once per sketch).
    """
    if "categories" not in prompts_table.columns:
        raise SketchSegDataError("the prompts table (sketch_prompts) lacks the 'categories' column")
    table = prompts_table
    if splits is not None:
        if "split" not in table.columns:
            raise SketchSegDataError("the prompts table (sketch_prompts) lacks the 'split' column")
        table = table[table["split"].isin(list(splits))]
    counts: dict[str, int] = {}
    for cats in table["categories"]:
        if cats is None or (isinstance(cats, float) and math.isnan(cats)):
            continue
        for name in {normalise_category(c) for c in cats}:
            if name:
                counts[name] = counts.get(name, 0) + 1
    return pd.Series(counts, dtype="int64", name="count").sort_index()


def category_frequency_table(
    per_category: pd.DataFrame,
    train_counts: pd.Series | Mapping[str, int],
    *,
    caption_counts: pd.Series | Mapping[str, int] | None = None,
    min_category_count: int = 10,
) -> pd.DataFrame:
    """Per-category test accuracy with its train/test frequencies (Fig. S11).

    Parameters
    ----------
    per_category
        the evaluation's per-category table (``test_per_category``): ``category``, ``n_sketches``
        (test sketches annotated with it), ``gt_pixels``, ``pixel_acc`` (fraction), ``iou``.
    train_counts
        training sketches whose caption yields the category (:func:`caption_category_counts` of
        the train split); categories missing there have train frequency 0 and are *unseen*.
    caption_counts
        caption occurrences over the whole data set (all splits); a category is *shown* in Fig. S11
        when it occurs more than ``min_category_count`` times there (the paper: more than ten).
        ``None`` uses ``train_counts``.

    Returns
    -------
    One row per test category: ``category``, ``pixel_acc`` and ``iou`` in percent, ``gt_pixels``,
    ``correct_pixels``, ``test_frequency`` (= ``n_sketches``), ``train_frequency``,
    ``caption_count``, ``seen`` (train frequency > 0), ``shown``; sorted by Acc@P (descending),
    then name.
    """
    required = {"category", "n_sketches", "gt_pixels", "pixel_acc"}
    missing = required - set(per_category.columns)
    if missing:
        raise SketchSegDataError(f"the per-category table (test_per_category) lacks columns {sorted(missing)}")
    if int(min_category_count) < 0:
        raise SketchSegConfigError(f"report.min_category_count must be >= 0, got {min_category_count!r}")
    train = {normalise_category(k): int(v) for k, v in dict(train_counts).items()}
    captions = train if caption_counts is None else {normalise_category(k): int(v) for k, v in dict(caption_counts).items()}

    df = per_category.copy()
    df["category"] = df["category"].map(normalise_category)
    # two raw labels may normalise to one name: pool their pixels
    df["correct_pixels"] = np.rint(df["pixel_acc"].astype(float).fillna(0.0) * df["gt_pixels"].astype(float))
    agg = {"n_sketches": "sum", "gt_pixels": "sum", "correct_pixels": "sum"}
    if "iou" in df.columns:
        agg["iou"] = "mean"
    pooled = df.groupby("category", sort=True).agg(agg).reset_index()
    out = pd.DataFrame({"category": pooled["category"]})
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(pooled["gt_pixels"] > 0, pooled["correct_pixels"] / pooled["gt_pixels"].clip(lower=1), np.nan)
    out["pixel_acc"] = 100.0 * np.asarray(acc, dtype=np.float64)
    out["iou"] = 100.0 * pooled["iou"].astype(float) if "iou" in pooled.columns else np.nan
    out["gt_pixels"] = pooled["gt_pixels"].astype("int64")
    out["correct_pixels"] = pooled["correct_pixels"].astype("int64")
    out["test_frequency"] = pooled["n_sketches"].astype("int64")
    out["train_frequency"] = out["category"].map(lambda c: train.get(c, 0)).astype("int64")
    out["caption_count"] = out["category"].map(lambda c: captions.get(c, 0)).astype("int64")
    out["seen"] = out["train_frequency"] > 0
    out["shown"] = out["caption_count"] > int(min_category_count)
    out = out.sort_values(["pixel_acc", "category"], ascending=[False, True], kind="mergesort", na_position="last")
    return out.reset_index(drop=True)[CATEGORY_COLUMNS]


def frequency_correlations(table: pd.DataFrame) -> dict[str, float]:
    """Eq. 5 between per-category Acc@P and train / test frequency.

    Over every test category (``corr_train``, ``corr_test``; N = number of test categories, as in
    the paper) and over the categories shown in Fig. S11 (``*_shown``).
    """
    shown = table[table["shown"]] if "shown" in table.columns else table.iloc[0:0]
    return {
        "corr_train": pearson_correlation(table["pixel_acc"], table["train_frequency"]),
        "corr_test": pearson_correlation(table["pixel_acc"], table["test_frequency"]),
        "corr_train_shown": pearson_correlation(shown["pixel_acc"], shown["train_frequency"]),
        "corr_test_shown": pearson_correlation(shown["pixel_acc"], shown["test_frequency"]),
        "n_categories": float(len(table)),
        "n_categories_shown": float(len(shown)),
    }


def seen_unseen_accuracy(table: pd.DataFrame) -> pd.DataFrame:
    """Accuracy on test categories seen / unseen in the training captions (S2.2).

    ``table`` is :func:`category_frequency_table`'s output. Returns two rows (``group`` = seen,
    unseen) with ``n_categories``, ``gt_pixels``, ``pixel_acc`` (pooled over the group's stroke
    pixels, %) and ``mean_category_acc`` (mean of the per-category Acc@P, %); NaN for an empty group.
    """
    rows = []
    for group, mask in (("seen", table["seen"].astype(bool)), ("unseen", ~table["seen"].astype(bool))):
        part = table[mask]
        gt = int(part["gt_pixels"].sum())
        correct = int(part["correct_pixels"].sum())
        rows.append(
            {
                "group": group,
                "n_categories": int(len(part)),
                "gt_pixels": gt,
                "pixel_acc": 100.0 * correct / gt if gt > 0 else float("nan"),
                "mean_category_acc": float(part["pixel_acc"].mean()) if part["pixel_acc"].notna().any() else float("nan"),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# single-category isolation threshold sweep (§3.4, S4.3, Fig. S14)
# --------------------------------------------------------------------------------------------------
def threshold_grid(spec: Mapping[str, float] | Sequence[float]) -> np.ndarray:
    """Thresholds from ``{"start", "stop", "step"}`` (stop included) or an explicit list.

    Values are rounded to 6 decimals (no float drift such as 0.7100000001) and must lie in [0, 1].
    """
    if isinstance(spec, Mapping):
        try:
            start, stop, step = float(spec["start"]), float(spec["stop"]), float(spec["step"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SketchSegConfigError(
                f"report.thresholds must be {{start, stop, step}} or a list of numbers, got {dict(spec)!r}"
            ) from exc
        if step <= 0 or stop < start:
            raise SketchSegConfigError(f"report.thresholds needs step > 0 and stop >= start, got {dict(spec)!r}")
        n = int(math.floor((stop - start) / step + 1e-9)) + 1
        grid = np.round(start + step * np.arange(n), 6)
    else:
        try:
            grid = np.round(np.asarray([float(v) for v in spec], dtype=np.float64), 6)
        except (TypeError, ValueError) as exc:
            raise SketchSegConfigError(f"report.thresholds must be a list of numbers, got {spec!r}") from exc
        grid = np.unique(grid)
    if grid.size == 0:
        raise SketchSegConfigError("report.thresholds is empty")
    if grid.min() < 0.0 or grid.max() > 1.0:
        raise SketchSegConfigError(f"report.thresholds must lie in [0, 1] (min-max maps), got [{grid.min()}, {grid.max()}]")
    return grid


def single_category_accuracy(scores: np.ndarray, is_category: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Acc@P of "category vs rest" for every threshold at once.

    ``scores`` are the category's min-max normalised similarities on the scored (stroke) pixels,
    ``is_category`` whether each of those pixels belongs to the category. A pixel is predicted as
    the category when ``score > t`` (:func:`sketchseg.model.similarity.isolate`). Returns (T,)
    fractions; NaN for no pixels.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    pos_mask = np.asarray(is_category, dtype=bool).reshape(-1)
    if s.shape != pos_mask.shape:
        raise ValueError(f"{s.size} scores but {pos_mask.size} category flags")
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if s.size == 0:
        return np.full(t.shape, np.nan)
    pos = np.sort(s[pos_mask])
    neg = np.sort(s[~pos_mask])
    true_pos = pos.size - np.searchsorted(pos, t, side="right")  # positives with score > t
    true_neg = np.searchsorted(neg, t, side="right")             # negatives with score <= t
    return (true_pos + true_neg) / float(s.size)


def sketch_threshold_sweep(
    norm_maps: np.ndarray, gt: np.ndarray, thresholds: np.ndarray
) -> tuple[list[int], np.ndarray]:
    """Sweep every ground-truth category of one sketch.

    ``norm_maps`` (C, H, W) min-max normalised similarity maps of the sketch's classes, ``gt`` (H, W)
    class indices with -1 on the paper (not scored). Returns (class indices present in ``gt``,
    (P, T) accuracies).
    """
    maps = np.asarray(norm_maps)
    labels = np.asarray(gt)
    if maps.ndim != 3 or labels.shape != maps.shape[1:]:
        raise ValueError(f"expected maps (C, H, W) and gt (H, W), got {maps.shape} and {labels.shape}")
    stroke = labels >= 0
    g = labels[stroke]
    present = [int(c) for c in np.unique(g) if 0 <= c < maps.shape[0]]
    if g.size and (g.max() >= maps.shape[0]):
        raise SketchSegDataError(f"gt holds class {int(g.max())} but only {maps.shape[0]} maps were given")
    rows = [single_category_accuracy(maps[c][stroke], g == c, thresholds) for c in present]
    acc = np.stack(rows) if rows else np.zeros((0, len(np.asarray(thresholds).reshape(-1))))
    return present, acc


def sweep_table(per_split: Mapping[str, np.ndarray], thresholds: np.ndarray) -> pd.DataFrame:
    """Mean Acc@P (%) over (sketch, category) pairs per threshold and split (Fig. S14 data).

    ``per_split`` maps a split name to its (P, T) pair accuracies (fractions).
    """
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    frames = []
    for split, acc in per_split.items():
        a = np.asarray(acc, dtype=np.float64).reshape(-1, t.size)
        with warnings.catch_warnings():  # a threshold column of NaNs only (no stroke pixel) stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(a, axis=0) * 100.0 if a.shape[0] else np.full(t.size, np.nan)
        frames.append(pd.DataFrame({"split": split, "threshold": t, "pixel_acc": mean,
                                    "n_pairs": np.full(t.size, a.shape[0], dtype=np.int64)}))
    if not frames:
        return pd.DataFrame(columns=SWEEP_COLUMNS)
    return pd.concat(frames, ignore_index=True)[SWEEP_COLUMNS]


def best_thresholds(sweep: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per split, the threshold with the highest mean Acc@P (the lowest such threshold on ties)."""
    out: dict[str, dict[str, float]] = {}
    for split, part in sweep.groupby("split", sort=False):
        part = part.dropna(subset=["pixel_acc"])
        if part.empty:
            out[str(split)] = {"threshold": float("nan"), "pixel_acc": float("nan")}
            continue
        part = part.sort_values("threshold", kind="mergesort")
        best = part.iloc[int(np.argmax(part["pixel_acc"].to_numpy()))]
        out[str(split)] = {"threshold": float(best["threshold"]), "pixel_acc": float(best["pixel_acc"])}
    return out


def accuracy_share_above(values: Sequence[float] | np.ndarray, cut: float) -> float:
    """Fraction (%) of finite values strictly above ``cut`` (Fig. 7: sketches with Acc@P > 80 %)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(100.0 * np.mean(v > cut)) if v.size else float("nan")
