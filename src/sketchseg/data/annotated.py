"""The annotated val/test sets (FS-COCO-seg strokes + labels) as a torch dataset, FS-COCO-seg's
category order, and the check that the sketch tables belong to the configured data root."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset

from sketchseg.data.ground_truth import gt_label_map, gt_label_map_by_count
from sketchseg.data.protocol_render import render_protocol
from sketchseg.data.strokes import RENDER_SIZE, load_vector_array, parse_strokes
from sketchseg.data.train_set import to_pixels
from sketchseg.errors import SketchSegConfigError, SketchSegDataError


logger = logging.getLogger(__name__)


@dataclass
class AnnotatedSketch:
    sketch_id: int
    image: torch.Tensor          # (3, S, S) model input in [0, 1]
    categories: list[str]        # the sketch's categories, in global class-index order
    stroke_map: np.ndarray       # (R, R) int32, -1 background
    stroke_labels: np.ndarray    # (n_strokes,) local class index of each stroke
    gt: np.ndarray               # (R, R) local class index, -1 background
    stroke_pixels: np.ndarray | None = None  # (2, P) stroke index, flat pixel: each stroke's own pixels


class AnnotatedSketches(Dataset):
    """FS-COCO-seg sketches rendered from their strokes as the evaluation protocol renders them.

    Each sketch is rendered at ``render_size`` by ``data.protocol_render.render_protocol``
    (coordinates scaled from the 256 frame and rounded, Bresenham lines, pixels on or outside the
    frame's edge dropped, 3 x 3 cross dilation); its categories are its own ground-truth labels (in
    ``class_order``); the model sees the render resized to ``image_size`` (bicubic, as the protocol).
    Where strokes of different categories overlap, the ground truth follows ``overlap_rule``:

    * ``most_strokes`` (default): the category with the most strokes covering the pixel, ties
      alphabetical (the authors' evaluation code, which made the published numbers);
    * ``lowest_class_index``: the category that comes first in ``class_order`` (FS-COCO-seg's
      ``all_classes.json``; alphabetical for labels it lacks).

    ``empty_strokes`` says how Acc@S counts a labelled stroke that renders to no pixel: ``wrong``
    (default: the protocol, where it votes "blank") or ``skip`` (not scored).
    """

    OVERLAP_RULES = ("most_strokes", "lowest_class_index")
    EMPTY_STROKE_RULES = ("wrong", "skip")

    def __init__(
        self,
        table: pd.DataFrame,
        *,
        image_size: int,
        render_size: int = RENDER_SIZE,
        class_order: Sequence[str] | None = None,
        overlap_rule: str = "most_strokes",
        empty_strokes: str = "wrong",
    ) -> None:
        if overlap_rule not in self.OVERLAP_RULES:
            raise SketchSegConfigError(
                f"evaluation.overlap_rule must be one of {', '.join(self.OVERLAP_RULES)}, got {overlap_rule!r}"
            )
        if empty_strokes not in self.EMPTY_STROKE_RULES:
            raise SketchSegConfigError(
                f"evaluation.empty_strokes must be one of {', '.join(self.EMPTY_STROKE_RULES)}, got {empty_strokes!r}"
            )
        if "labels_json" not in table.columns:
            raise SketchSegDataError("evaluation table lacks the labels_json column (FS-COCO-seg labels)")
        self.rows = table.reset_index(drop=True)
        self.image_size = image_size
        self.render_size = render_size
        self.empty_strokes = empty_strokes
        self.class_rank = {c: k for k, c in enumerate(class_order or [])}
        self.overlap_rule = overlap_rule

    def __len__(self) -> int:
        return len(self.rows)

    def _rank(self, label: str) -> tuple[int, str]:
        return (self.class_rank.get(label, len(self.class_rank)), label)

    def __getitem__(self, i: int) -> AnnotatedSketch:
        row = self.rows.iloc[i]
        vector_path = row.get("seg_vector_path") or row["vector_path"]
        arr = load_vector_array(vector_path)
        strokes = parse_strokes(arr, source=str(vector_path), clamp=False)  # the protocol: as drawn
        labels = json.loads(row["labels_json"])
        if len(labels) == len(strokes) - 1:  # labelled without the trailing open run (ingestion allows it)
            strokes = parse_strokes(arr, source=str(vector_path), open_tail=False, clamp=False)
        if len(labels) != len(strokes):
            raise SketchSegDataError(
                f"{vector_path}: {len(strokes)} strokes but {len(labels)} labels in {row.get('labels_path')}"
            )
        categories = sorted(set(labels), key=self._rank)
        local = {c: k for k, c in enumerate(categories)}
        stroke_labels = np.array([local[l] for l in labels], dtype=np.int64)
        # lowest class index wins where strokes overlap: order strokes by class, then stroke index
        order = sorted(range(len(strokes)), key=lambda s: (stroke_labels[s], s))
        ink, stroke_map, own = render_protocol(strokes, self.render_size, order=order)
        if self.overlap_rule == "most_strokes":
            alphabetical = sorted(range(len(categories)), key=lambda k: categories[k])
            gt = gt_label_map_by_count(own, stroke_labels, stroke_map.shape, alphabetical)
        else:
            gt = gt_label_map(stroke_map, stroke_labels)
        small = Image.fromarray(ink).resize((self.image_size, self.image_size), Image.Resampling.BICUBIC)
        image = to_pixels(np.asarray(small, dtype=np.float32) / 255.0)
        return AnnotatedSketch(int(row["sketch_id"]), image, categories, stroke_map, stroke_labels, gt,
                               own.astype(np.int32))


def collate_annotated(items: list[AnnotatedSketch]) -> list[AnnotatedSketch]:
    return items


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


def annotated_split(
    splits_table: pd.DataFrame,
    split: str,
    image_size: int,
    *,
    render_size: int,
    overlap_rule: str,
    class_order: Sequence[str] | None,
    empty_strokes: str = "wrong",
    data_root: str | Path | None = None,
    limit: int | None = None,
) -> AnnotatedSketches:
    """The annotated sketches of one split (at most ``limit``), rendered at ``render_size`` as the
    evaluation protocol renders them, ``overlap_rule`` / ``class_order`` at overlapping strokes and
    ``empty_strokes`` for Acc@S
    (see :class:`AnnotatedSketches`); the tables must come from ``data_root`` (``data.fscoco_root``,
    :func:`check_data_root`; ``None``: not checked)."""
    check_data_root(splits_table, {} if data_root is None else {"fscoco_root": str(data_root)})
    return AnnotatedSketches(
        annotated_subset(splits_table, split, limit),
        image_size=int(image_size),
        render_size=int(render_size),
        class_order=class_order,
        overlap_rule=str(overlap_rule),
        empty_strokes=str(empty_strokes),
    )
