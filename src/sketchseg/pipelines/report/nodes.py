"""Report nodes: thin glue between the catalog and :mod:`sketchseg.reporting`."""

from __future__ import annotations

import logging
import math
from typing import Any

from matplotlib.figure import Figure
import pandas as pd

from sketchseg import tracking
from sketchseg.engine.config import EvalConfig, TrainConfig
from sketchseg.engine.scoring import check_same_scoring, choose_checkpoint
from sketchseg.errors import SketchSegConfigError
from sketchseg.model.config import ModelConfig
from sketchseg.reporting.analysis import (
    accuracy_share_above,
    best_thresholds,
    caption_category_counts,
    category_frequency_table,
    frequency_correlations,
    seen_unseen_accuracy,
    threshold_grid,
)
from sketchseg.reporting.figures import (
    accuracy_histogram,
    category_accuracy_figure,
    seen_unseen_figure,
    threshold_sweep_figure,
    val_curves_figure,
)
from sketchseg.reporting.overlays import OverlaySample, overlay_grid
from sketchseg.reporting.predict import report_model_passes as model_passes

logger = logging.getLogger(__name__)

_REQUIRED = ("n_overlay_sketches", "seed", "thresholds", "min_category_count")


def _check_report_params(report: dict[str, Any]) -> None:
    missing = [k for k in _REQUIRED if k not in report]
    if missing:
        raise SketchSegConfigError(f"report parameters lack {missing} (see conf/base/parameters_report.yml)")
    if int(report["n_overlay_sketches"]) < 0:
        raise SketchSegConfigError(f"report.n_overlay_sketches must be >= 0, got {report['n_overlay_sketches']!r}")


def checked_test_tables(
    best: dict[str, Any],
    last: dict[str, Any],
    test_metrics: dict[str, Any],
    per_sketch: pd.DataFrame,
    per_category: pd.DataFrame,
    model_params: dict[str, Any],
    evaluation: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """The report's first node: the checkpoint ``evaluation.checkpoint`` names and the test tables
    pass on only when the last evaluation scored that checkpoint with the settings the report's own
    model passes use (``check_same_scoring``), so a refused report writes nothing and a report
    never mixes two scoring setups."""
    ecfg = EvalConfig.from_dict(evaluation)
    checkpoint = choose_checkpoint(best, last, ecfg)
    check_same_scoring(test_metrics, ModelConfig.from_dict(model_params), ecfg,
                       checkpoint_metadata=dict(checkpoint.get("metadata") or {}))
    return checkpoint, test_metrics, per_sketch, per_category


def report_model_passes(
    checkpoint: dict[str, Any],
    splits_table: pd.DataFrame,
    model_params: dict[str, Any],
    evaluation: dict[str, Any],
    training: dict[str, Any],
    data: dict[str, Any],
    report: dict[str, Any],
) -> tuple[list[OverlaySample], pd.DataFrame]:
    """Load the checkpoint (``checked_test_tables``' output, so this runs after the check) once;
    segment a seeded sample of test sketches for the overlay grid and run the single-category
    threshold sweep on the annotated val and test sketches, on ``training.device`` with
    ``training.precision`` (:meth:`EvalConfig.from_params`)."""
    _check_report_params(report)
    thresholds = threshold_grid(report["thresholds"])
    cap = report.get("max_sweep_sketches")
    samples, sweep = model_passes(
        checkpoint, splits_table, model_params, EvalConfig.from_params(evaluation, training), data,
        n_overlay_sketches=int(report["n_overlay_sketches"]), seed=int(report["seed"]), thresholds=thresholds,
        max_sweep_sketches=None if cap is None else int(cap),
    )
    warn_best_at_grid_end(sweep, thresholds)
    return samples, sweep


def warn_best_at_grid_end(sweep: pd.DataFrame, thresholds) -> list[str]:  # noqa: ANN001 - numpy array
    """Warn (and return the splits) where the best threshold is the first or last of the grid:
    the true best may lie outside ``report.thresholds``."""
    ends = (float(min(thresholds)), float(max(thresholds)))
    at_end = {split: best["threshold"] for split, best in best_thresholds(sweep).items() if best["threshold"] in ends}
    for split, threshold in at_end.items():
        logger.warning("threshold sweep (%s): the best threshold %.2f is at an end of report.thresholds %s; "
                       "the true best may lie outside it: widen the grid", split, threshold, list(ends))
    return list(at_end)


def plot_overlays(samples: list[OverlaySample], report: dict[str, Any]) -> Figure:
    """Fig. S9-like grid of the sampled test sketches."""
    return overlay_grid(
        samples,
        title=f"{len(samples)} test sketches segmented with their ground-truth categories (seed {report.get('seed')})",
        display_radius=int(report.get("display_radius", 1)),
    )


def plot_accuracy_histogram(per_sketch: pd.DataFrame, report: dict[str, Any]) -> Figure:
    """Fig. 7: histogram of per-sketch Acc@P on the test set."""
    values = per_sketch["pixel_acc"] if "pixel_acc" in per_sketch.columns else []
    return accuracy_histogram(values, bin_width=float(report.get("histogram_bin_width", 5.0)),
                              cut=float(report.get("strong_accuracy", 80.0)))


def build_category_report(
    per_category: pd.DataFrame, prompts_table: pd.DataFrame, report: dict[str, Any]
) -> pd.DataFrame:
    """Per test category: Acc@P, train/test frequency, caption count, seen, shown (Fig. S11)."""
    return category_frequency_table(
        per_category,
        caption_category_counts(prompts_table, ["train"]),
        caption_counts=caption_category_counts(prompts_table),
        min_category_count=int(report["min_category_count"]),
    )


def plot_category_accuracy(category_report: pd.DataFrame, report: dict[str, Any]) -> Figure:
    """Fig. S11 with the Eq. 5 correlations in its title."""
    return category_accuracy_figure(
        category_report,
        correlations=frequency_correlations(category_report),
        min_category_count=int(report["min_category_count"]),
    )


def plot_seen_unseen(category_report: pd.DataFrame) -> Figure:
    """Seen vs unseen test categories (S2.2)."""
    return seen_unseen_figure(seen_unseen_accuracy(category_report))


def plot_threshold_sweep(sweep: pd.DataFrame, evaluation: dict[str, Any]) -> Figure:
    """Fig. S14 with the best threshold per split and the configured isolation threshold."""
    reference = EvalConfig.from_dict(evaluation).isolation_threshold
    return threshold_sweep_figure(sweep, best_thresholds(sweep), reference=reference)


def plot_val_curves(history: pd.DataFrame, test_metrics: dict[str, Any], training: dict[str, Any]) -> Figure:
    """Per-epoch validation curves with the epoch of the evaluated checkpoint marked."""
    epoch = test_metrics.get("checkpoint_epoch")
    return val_curves_figure(history, selection_metric=TrainConfig.from_dict(training).selection_metric,
                             chosen_epoch=int(epoch) if epoch is not None and int(epoch) >= 0 else None)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def summarise_report(
    per_sketch: pd.DataFrame,
    category_report: pd.DataFrame,
    sweep: pd.DataFrame,
    report: dict[str, Any],
) -> dict[str, Any]:
    """The report's numbers in one JSON (NaN -> null), also logged as ``report_*`` MLflow metrics."""
    cut = float(report.get("strong_accuracy", 80.0))
    values = per_sketch["pixel_acc"] if "pixel_acc" in per_sketch.columns else pd.Series(dtype=float)
    corr = frequency_correlations(category_report)
    groups = seen_unseen_accuracy(category_report).set_index("group")
    best = best_thresholds(sweep)
    summary: dict[str, Any] = {
        "n_test_sketches": int(values.notna().sum()),
        "mean_pixel_acc": float(values.mean()) if values.notna().any() else float("nan"),
        "strong_accuracy_cut": cut,
        "share_sketches_above_cut": accuracy_share_above(values, cut),
        "corr_train_frequency": corr["corr_train"],
        "corr_test_frequency": corr["corr_test"],
        "corr_train_frequency_shown": corr["corr_train_shown"],
        "corr_test_frequency_shown": corr["corr_test_shown"],
        "n_test_categories": int(corr["n_categories"]),
        "n_categories_shown": int(corr["n_categories_shown"]),
        "min_category_count": int(report["min_category_count"]),
    }
    for group in ("seen", "unseen"):
        summary[f"n_{group}_categories"] = int(groups.loc[group, "n_categories"])
        summary[f"{group}_pixel_acc"] = float(groups.loc[group, "pixel_acc"])
        summary[f"{group}_mean_category_acc"] = float(groups.loc[group, "mean_category_acc"])
    for split in ("val", "test"):
        b = best.get(split, {"threshold": float("nan"), "pixel_acc": float("nan")})
        summary[f"best_threshold_{split}"] = b["threshold"]
        summary[f"best_threshold_{split}_pixel_acc"] = b["pixel_acc"]
    tracking.log_metrics({f"report_{k}": v for k, v in summary.items() if isinstance(v, (int, float))})
    logger.info(
        "report: Eq. 5 corr (train %.3f, test %.3f); seen %.2f%% / unseen %.2f%%; best threshold val %s, test %s",
        summary["corr_train_frequency"], summary["corr_test_frequency"], summary["seen_pixel_acc"],
        summary["unseen_pixel_acc"], summary["best_threshold_val"], summary["best_threshold_test"],
    )
    return {k: _finite_or_none(v) for k, v in summary.items()}
