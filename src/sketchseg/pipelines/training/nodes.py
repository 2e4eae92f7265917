"""Fit the two-level model and keep the checkpoint with the best validation mIoU (§4.3)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from sketchseg import tracking  # noqa: E402
from sketchseg.engine.data import AnnotatedSketches, TrainSketches  # noqa: E402
from sketchseg.engine.runtime import seed_everything  # noqa: E402
from sketchseg.engine.train import TrainConfig, fit, load_training_state  # noqa: E402
from sketchseg.errors import SketchSegConfigError, SketchSegDataError  # noqa: E402
from sketchseg.model.checkpoint import FORMAT as CHECKPOINT_FORMAT  # noqa: E402
from sketchseg.model.config import ModelConfig  # noqa: E402
from sketchseg.model.model import build_model  # noqa: E402

logger = logging.getLogger(__name__)


CLASS_LIST_PLACES = ("test/all_classes.json", "val/all_classes.json", "all_classes.json")


def class_order(data: dict[str, Any]) -> list[str]:
    """FS-COCO-seg's global class order (``all_classes.json``, background first): where strokes of
    two classes overlap, the lower index wins (``evaluation.overlap_rule: lowest_class_index``). The release has one list in each of ``test/`` and
    ``val/`` (read in that order; labels only the later one has are appended); an empty list (no
    file: a warning) falls back to alphabetical order."""
    root = Path(data["fscoco_seg_root"])
    order: list[str] = []
    for rel in CLASS_LIST_PLACES:
        path = root / rel
        if not path.is_file():
            continue
        try:
            classes = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SketchSegDataError(f"{path}: cannot read the class list ({exc})") from exc
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise SketchSegDataError(f"{path}: the class list must be a JSON list of strings")
        order += [c for c in classes if c != "blank_pixel" and c not in order]
    if not order:
        logger.warning("no all_classes.json under %s (looked for %s): overlapping strokes of different classes "
                       "are resolved in alphabetical class order", root, ", ".join(CLASS_LIST_PLACES))
    return order


def annotated_subset(splits_table: pd.DataFrame, split: str, limit: int | None = None) -> pd.DataFrame:
    """The sketches of ``split`` that carry FS-COCO-seg stroke labels (others are counted, not scored)."""
    part = splits_table[splits_table["split"] == split]
    labelled = part[part["labels_json"].notna()]
    if len(labelled) < len(part):
        logger.warning(
            "%d of %d %s sketches have no FS-COCO-seg labels and are not scored", len(part) - len(labelled), len(part), split
        )
    if limit is not None and int(limit) < len(labelled):
        # evenly spread over the table (participant order), not the first participants' sketches
        keep = np.linspace(0, len(labelled) - 1, num=max(int(limit), 0)).round().astype(int)
        labelled = labelled.iloc[keep]
    return labelled.reset_index(drop=True)


def check_data_root(splits_table: pd.DataFrame, data: dict[str, Any]) -> None:
    """The sketch tables must come from ``data.fscoco_root``: tables another environment wrote
    (e.g. the sample's, left in data/03_primary by the demo) would otherwise be trained on or
    scored silently."""
    if "fscoco_root" not in data or "raster_path" not in splits_table.columns or splits_table.empty:
        return
    root = Path(data["fscoco_root"]).expanduser().resolve()
    paths = splits_table["raster_path"].dropna().astype(str)
    folders = paths.map(lambda p: str(Path(p).parent))

    def inside(folder: str) -> bool:
        resolved = Path(folder).expanduser().resolve()
        return resolved == root or root in resolved.parents

    foreign = [f for f in folders.unique() if not inside(f)]  # one check per folder, not per sketch
    outside = paths[folders.isin(foreign)].tolist()
    if outside:
        raise SketchSegDataError(
            f"sketch_splits lists {len(outside)} of {len(paths)} sketches outside data.fscoco_root={root} "
            f"(e.g. {outside[0]}): the tables were written for other data (another --env?); run "
            "`kedro run --pipelines=data --env=<this env>` first"
        )


def annotated_split(splits_table: pd.DataFrame, split: str, image_size: int, evaluation: dict[str, Any],
                    data: dict[str, Any], limit: int | None = None) -> AnnotatedSketches:
    """The annotated sketches of one split (at most ``limit``), rendered as ``evaluation`` says
    (reference protocol); the tables must come from ``data.fscoco_root`` (``check_data_root``)."""
    check_data_root(splits_table, data)
    return AnnotatedSketches(
        annotated_subset(splits_table, split, limit),
        image_size=int(image_size),
        render_size=int(evaluation["render_size"]),
        thickness=int(evaluation["thickness"]),
        class_order=class_order(data),
        overlap_rule=str(evaluation.get("overlap_rule", "lowest_class_index")),
    )


def training_table(splits_table: pd.DataFrame, prompts_table: pd.DataFrame) -> pd.DataFrame:
    train = splits_table[splits_table["split"] == "train"]
    cols = ["sketch_id", "categories", "prompts", "no_noun"]
    return train.merge(prompts_table[cols], on="sketch_id", how="left", validate="one_to_one")


def check_prompt_template(table: pd.DataFrame, template: str) -> None:
    """Training prompts (built with ``prompts.template``) must be the prompts evaluation and
    segmentation build with ``model.prompt_template``; else training and inference disagree."""
    rows = table[~table["no_noun"].fillna(False).astype(bool)] if "no_noun" in table.columns else table
    for cats, prompts in zip(rows["categories"], rows["prompts"]):  # no-noun fallbacks: the caption itself
        for cat, prompt in zip(cats, prompts):
            if prompt != template.format(cat):
                raise SketchSegConfigError(
                    f"training prompt {prompt!r} for category {cat!r} was not built with model.prompt_template "
                    f"{template!r}, which evaluation and segmentation use: set prompts.template and "
                    "model.prompt_template to the same template"
                )


def checkpoint_metadata(cfg: ModelConfig, *, epoch: int, metric: float, variant: str, kind: str) -> dict[str, str]:
    return {
        "format": CHECKPOINT_FORMAT,
        "model_config": json.dumps(cfg.to_dict(), sort_keys=True),
        "epoch": str(epoch),
        "val_miou": f"{metric:.6f}",
        "variant": variant,
        "kind": kind,
    }


def train_model(
    splits_table: pd.DataFrame,
    prompts_table: pd.DataFrame,
    model_params: dict[str, Any],
    training: dict[str, Any],
    evaluation: dict[str, Any],
    data: dict[str, Any],
    experiment: dict[str, Any],
) -> tuple[dict, dict, pd.DataFrame]:
    """Train, validating on the annotated val split after every epoch."""
    cfg = ModelConfig.from_dict(model_params)
    tcfg = TrainConfig.from_dict(training)
    seed_everything(tcfg.seed)  # the added modules (prompts, cross-attention) initialise from it
    model = build_model(cfg)
    counts = model.parameter_counts()
    logger.info("parameters: %s trainable of %s", f"{counts['trainable']:,}", f"{counts['total']:,}")
    tracking.log_metrics({"params_trainable": counts["trainable"], "params_total": counts["total"]})

    table = training_table(splits_table, prompts_table)
    check_prompt_template(table, cfg.prompt_template)
    train_set = TrainSketches(
        table,
        image_size=cfg.image_size,
        max_categories=tcfg.max_categories_per_sketch,
        seed=tcfg.seed,
    )
    val_set = annotated_split(splits_table, "val", cfg.image_size, evaluation, data, tcfg.max_val_sketches)
    logger.info("training on %d sketches, validating on %d annotated sketches", len(train_set), len(val_set))
    if tcfg.resume and tcfg.state_path and Path(tcfg.state_path).is_file():
        # a resumed run is a new MLflow run: give it the curves of the epochs it continues from
        for row in load_training_state(tcfg.state_path)["history"]:
            row = dict(row)
            tracking.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
        tracking.set_tags({"sketchseg.resumed_from": tcfg.state_path})
    result = fit(
        model,
        train_set,
        val_set,
        tcfg,
        eval_batch_size=int(evaluation["batch_size"]),
        eval_num_workers=int(evaluation.get("num_workers", 0)),
        on_epoch_end=lambda epoch, metrics: tracking.log_metrics(metrics, step=epoch),
    )
    tracking.log_metrics({"best_epoch": result.best_epoch, "best_val_miou": result.best_metric})
    tracking.set_tags({"sketchseg.best_epoch": result.best_epoch})
    variant = str(experiment.get("variant", "ours"))
    best = {"state": result.best_state,
            "metadata": checkpoint_metadata(cfg, epoch=result.best_epoch, metric=result.best_metric, variant=variant, kind="best")}
    last_metric = float(result.history.iloc[-1].get(tcfg.selection_metric, float("nan"))) if len(result.history) else float("nan")
    last = {"state": result.last_state,
            "metadata": checkpoint_metadata(cfg, epoch=result.last_epoch, metric=last_metric, variant=variant, kind="last")}
    logger.info("chosen checkpoint: epoch %d (%s %.2f)", result.best_epoch, tcfg.selection_metric, result.best_metric)
    return best, last, result.history


def plot_training_curves(history: pd.DataFrame) -> plt.Figure:
    """Per-epoch losses, validation metrics and the learnable threshold."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
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
