"""Report figures (matplotlib): Fig. 7 histogram, Fig. S11 per-category bars, seen vs unseen
categories (S2.2), Fig. S14 threshold sweep and the per-epoch validation curves.

Every function returns a ``matplotlib.figure.Figure`` (never shows it) and draws a "no data" note
instead of failing when its table is empty. The backend is left to the caller (the Kedro nodes
use Agg; without a display matplotlib falls back to Agg by itself).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure
import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

BAR_BLUE = "#4C72B0"
TRAIN_GREEN = "#2CA02C"
TEST_RED = "#D62728"
VAL_PURPLE = "#8E44AD"
SPLIT_COLORS = {"val": VAL_PURPLE, "test": TRAIN_GREEN}  # Fig. S14: test green, validation purple


def _no_data(fig: Figure, message: str) -> Figure:
    ax = fig.add_subplot(1, 1, 1)
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, color="#555555", wrap=True)
    ax.set_axis_off()
    return fig


def _fmt(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or not math.isfinite(float(value)) else f"{float(value):.{digits}f}"


# --------------------------------------------------------------------------------------------------
# Fig. 7
# --------------------------------------------------------------------------------------------------
def accuracy_histogram(
    values: Sequence[float] | np.ndarray,
    *,
    bin_width: float = 5.0,
    cut: float = 80.0,
    title: str = "Acc@P per test sketch",
) -> Figure:
    """Histogram of per-sketch Acc@P (%, Fig. 7) with the mean and the share above ``cut``."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    fig = Figure(figsize=(7.0, 4.0))
    if v.size == 0:
        return _no_data(fig, "no per-sketch Acc@P values (run the evaluation first)")
    ax = fig.add_subplot(1, 1, 1)
    edges = np.arange(0.0, 100.0 + bin_width, bin_width)
    edges[-1] = max(edges[-1], 100.0)
    ax.hist(np.clip(v, 0.0, 100.0), bins=edges, color=BAR_BLUE, edgecolor="white", linewidth=0.8)
    mean = float(v.mean())
    share = float(100.0 * np.mean(v > cut))
    ax.axvline(mean, color="#333333", linestyle="--", linewidth=1.2, label=f"mean {mean:.1f}%")
    ax.axvline(cut, color=TEST_RED, linestyle=":", linewidth=1.2, label=f"{share:.0f}% of sketches > {cut:g}%")
    ax.set_xlim(0, 100)
    ax.set_xlabel("Acc@P (%)")
    ax.set_ylabel("number of sketches")
    ax.set_title(f"{title} (n = {v.size})")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(frameon=False, fontsize=9, loc="upper left")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# Fig. S11
# --------------------------------------------------------------------------------------------------
def category_accuracy_figure(
    table: pd.DataFrame,
    *,
    correlations: Mapping[str, float] | None = None,
    min_category_count: int | None = None,
) -> Figure:
    """Fig. S11: blue bars = per-category Acc@P of the categories marked ``shown``; green line =
    train frequency, red line = test frequency (right axis). ``table`` is
    :func:`sketchseg.reporting.analysis.category_frequency_table`'s output (sorted by Acc@P)."""
    shown = table[table["shown"].astype(bool)] if "shown" in table.columns else table
    n = len(shown)
    width = float(np.clip(0.26 * n + 2.5, 7.0, 40.0))
    fig = Figure(figsize=(width, 4.8))
    if n == 0:
        more = f" with more than {min_category_count} caption occurrences" if min_category_count is not None else ""
        return _no_data(fig, f"no test category{more}")
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(n)
    ax.bar(x, shown["pixel_acc"].to_numpy(dtype=float), color=BAR_BLUE, width=0.75, label="Acc@P (test)")
    ax.set_ylim(0, 105)
    ax.set_ylabel("Acc@P (%)")
    ax.set_xticks(x)
    ax.set_xticklabels(shown["category"].tolist(), rotation=70, ha="right", rotation_mode="anchor",
                       fontsize=8 if n <= 60 else 6)
    ax.set_xlim(-0.6, n - 0.4)
    ax.grid(axis="y", alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(x, shown["train_frequency"].to_numpy(dtype=float), color=TRAIN_GREEN, marker="o", markersize=3,
             linewidth=1.4, label="train frequency")
    ax2.plot(x, shown["test_frequency"].to_numpy(dtype=float), color=TEST_RED, marker="o", markersize=3,
             linewidth=1.4, label="test frequency")
    ax2.set_ylabel("sketches with the category")
    ax2.set_ylim(bottom=0)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=8, frameon=True, framealpha=0.9)
    title = "Per-category Acc@P with train / test frequency"
    if min_category_count is not None:
        title += f" (categories with > {min_category_count} caption occurrences: {n})"
    if correlations:
        title += (f"\nEq. 5 correlation with train frequency {_fmt(correlations.get('corr_train'))}, "
                  f"with test frequency {_fmt(correlations.get('corr_test'))} "
                  f"(all {int(correlations.get('n_categories', 0))} test categories)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# S2.2 seen vs unseen
# --------------------------------------------------------------------------------------------------
def seen_unseen_figure(summary: pd.DataFrame) -> Figure:
    """Bars of pooled Acc@P on test categories seen / unseen in the training captions, with the
    mean per-category Acc@P as a marker and the number of categories under each bar."""
    fig = Figure(figsize=(5.2, 4.0))
    if summary.empty or summary["n_categories"].sum() == 0:
        return _no_data(fig, "no test categories")
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(summary))
    acc = summary["pixel_acc"].to_numpy(dtype=float)
    colors = [BAR_BLUE if g == "seen" else "#DD8452" for g in summary["group"]]
    ax.bar(x, np.nan_to_num(acc), color=colors, width=0.6, label="Acc@P (pooled pixels)")
    ax.scatter(x, summary["mean_category_acc"].to_numpy(dtype=float), color="#222222", marker="D", s=28, zorder=3,
               label="mean per-category Acc@P")
    for xi, a, n in zip(x, acc, summary["n_categories"]):
        text = f"{a:.1f}%" if math.isfinite(a) else "no category"
        ax.text(xi, a + 2 if math.isfinite(a) else 50.0, text, ha="center", va="bottom", fontsize=9,
                color="#222222" if math.isfinite(a) else "#777777", style="normal" if math.isfinite(a) else "italic")
    ax.set_xticks(x)
    ax.set_xticklabels([f"{g}\n({n} categories)" for g, n in zip(summary["group"], summary["n_categories"])])
    ax.set_ylim(0, 118)
    ax.set_ylabel("Acc@P (%)")
    ax.set_title("Test categories seen / unseen in training captions", fontsize=10)
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# Fig. S14
# --------------------------------------------------------------------------------------------------
def threshold_sweep_figure(
    sweep: pd.DataFrame,
    best: Mapping[str, Mapping[str, float]] | None = None,
    *,
    reference: float | None = None,
) -> Figure:
    """Fig. S14: single category vs rest Acc@P as a function of the threshold, one line per split
    (validation purple, test green), the best threshold of each split marked; ``reference`` (the
    configured isolation threshold) as a dotted line."""
    fig = Figure(figsize=(7.0, 4.2))
    if sweep.empty or sweep["pixel_acc"].notna().sum() == 0:
        return _no_data(fig, "no threshold sweep (no annotated val/test sketches)")
    ax = fig.add_subplot(1, 1, 1)
    names = {"val": "validation", "test": "test"}
    offsets = iter([(0, 9), (0, -16), (0, 22), (0, -29)])  # keep the best-threshold labels apart
    for split, part in sweep.groupby("split", sort=False):
        part = part.sort_values("threshold")
        color = SPLIT_COLORS.get(str(split))
        n_pairs = int(part["n_pairs"].iloc[0]) if "n_pairs" in part else 0
        line, = ax.plot(part["threshold"], part["pixel_acc"], color=color, linewidth=1.8,
                        label=f"{names.get(str(split), split)} ({n_pairs} sketch-category pairs)")
        b = (best or {}).get(str(split))
        if b and math.isfinite(b.get("threshold", float("nan"))):
            ax.scatter([b["threshold"]], [b["pixel_acc"]], color=line.get_color(), s=40, zorder=3)
            span = max(float(sweep["threshold"].max() - sweep["threshold"].min()), 1e-9)
            rel = (b["threshold"] - float(sweep["threshold"].min())) / span
            ha = "right" if rel > 0.85 else "left" if rel < 0.15 else "center"
            ax.annotate(f"best {b['threshold']:.2f}: {b['pixel_acc']:.1f}%", (b["threshold"], b["pixel_acc"]),
                        textcoords="offset points", xytext=next(offsets, (0, 9)), ha=ha, fontsize=8.5,
                        color=line.get_color(), bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    if reference is not None:
        ax.axvline(float(reference), color="#555555", linestyle=":", linewidth=1.2,
                   label=f"isolation threshold in use ({float(reference):.2f})")
    ax.set_xlabel("threshold on the min-max normalised similarity map")
    ax.set_ylabel("Acc@P, single category vs rest (%)")
    ax.set_title("Single-category isolation by thresholding", fontsize=10)
    lo, hi = float(sweep["threshold"].min()), float(sweep["threshold"].max())
    pad = 0.02 * max(hi - lo, 0.05)
    ax.set_xlim(lo - pad, hi + pad)
    top = float(np.nanmax(sweep["pixel_acc"].to_numpy(dtype=float)))
    bottom = float(np.nanmin(sweep["pixel_acc"].to_numpy(dtype=float)))
    ax.set_ylim(max(0.0, bottom - 5.0), min(101.0, top + 7.0))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# per-epoch validation curves
# --------------------------------------------------------------------------------------------------
VAL_METRICS = (
    ("val_miou", "mIoU"),
    ("val_pixel_acc", "Acc@P"),
    ("val_stroke_acc", "Acc@S"),
    ("val_mean_acc", "MeanAcc"),
    ("val_fwiou", "FWIoU"),
)


def selected_epoch(history: pd.DataFrame, selection_metric: str = "val_miou") -> int | None:
    """The epoch training chose by ``selection_metric`` (``engine.train.fit``'s rule): the first best
    of the trained epochs 1..E; epoch 0 (the untrained model) only when nothing was trained; None
    when no epoch has a score."""
    if "epoch" not in history.columns or selection_metric not in history.columns:
        return None
    scored = history.dropna(subset=[selection_metric]).sort_values("epoch", kind="stable")
    trained = scored[scored["epoch"] >= 1]
    pool = trained if len(trained) else scored
    if pool.empty:
        return None
    return int(pool.loc[pool[selection_metric].idxmax(), "epoch"])


def val_curves_figure(history: pd.DataFrame, *, selection_metric: str = "val_miou",
                      chosen_epoch: int | None = None) -> Figure:
    """Validation metrics per epoch (epoch 0 = before training) with the selected epoch marked
    (``chosen_epoch``, e.g. the evaluated checkpoint's; by default the best ``selection_metric``),
    and the learnable threshold per epoch when logged."""
    h = history.sort_values("epoch") if "epoch" in history.columns else history.iloc[0:0]
    present = [(c, label) for c, label in VAL_METRICS if c in h.columns and h[c].notna().any()]
    has_thr = "threshold" in h.columns and h["threshold"].notna().any()
    fig = Figure(figsize=(11.0 if has_thr else 7.0, 4.0))
    if h.empty or not present:
        return _no_data(fig, "no validation history")
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1.0]}) if has_thr else [fig.add_subplot(1, 1, 1)]
    ax = axes[0]
    for col, label in present:
        ax.plot(h["epoch"], h[col], marker="o", markersize=3.5, linewidth=1.5, label=label)
    chosen = selected_epoch(h, selection_metric) if chosen_epoch is None else int(chosen_epoch)
    if chosen is not None:
        row = h.loc[h["epoch"] == chosen, selection_metric] if selection_metric in h.columns else pd.Series(dtype=float)
        score = f" ({selection_metric} {float(row.iloc[0]):.2f})" if len(row) and pd.notna(row.iloc[0]) else ""
        ax.axvline(chosen, color="#555555", linestyle="--", linewidth=1.0, label=f"selected: epoch {chosen}{score}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation (%)")
    ax.set_title("Validation metrics per epoch", fontsize=10)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, framealpha=0.9, loc="best")
    if has_thr:
        t = h.dropna(subset=["threshold"])
        axes[1].plot(t["epoch"], t["threshold"], marker="o", markersize=3.5, color="#C44E52")
        axes[1].set_xlabel("epoch")
        axes[1].set_ylabel("threshold")
        axes[1].set_title("Learnable threshold (training)", fontsize=10)
        axes[1].xaxis.get_major_locator().set_params(integer=True)
        axes[1].grid(alpha=0.3)
    fig.tight_layout()
    return fig


def training_curves_figure(history: pd.DataFrame) -> Figure:
    """Per-epoch losses, validation metrics and the learnable threshold."""
    fig = Figure(figsize=(13, 3.6))
    axes = fig.subplots(1, 3)
    h = history.sort_values("epoch")
    for col, label in (("train_loss", "total"), ("train_loss_global", "global (Eq. 1)"), ("train_loss_category", "category")):
        if col in h and h[col].notna().any():
            axes[0].plot(h["epoch"], h[col], marker="o", label=label)
    axes[0].set_title("training loss")
    for col, label in (("val_miou", "mIoU"), ("val_pixel_acc", "Acc@P"), ("val_stroke_acc", "Acc@S")):
        if col in h and h[col].notna().any():
            axes[1].plot(h["epoch"], h[col], marker="o", label=label)
    axes[1].set_title("validation (%)")
    if "threshold" in h and h["threshold"].notna().any():
        axes[2].plot(h["epoch"], h["threshold"], marker="o", color="#C44E52")
    axes[2].set_title("learnable threshold")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
