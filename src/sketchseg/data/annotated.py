"""Torch datasets for training (raster sketch + caption + categories) and evaluation (strokes + labels)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset

from sketchseg.data.strokes import load_sketch_image, load_vector_array, parse_strokes, render_labelled_strokes
from sketchseg.errors import SketchSegConfigError, SketchSegDataError
from sketchseg.model.metrics import gt_label_map, gt_label_map_by_count

logger = logging.getLogger(__name__)


def to_pixels(grey: np.ndarray) -> torch.Tensor:
    """(H, W) float in [0, 1] (1 = paper) -> (3, H, W) float tensor."""
    t = torch.from_numpy(np.ascontiguousarray(grey, dtype=np.float32))
    return t.unsqueeze(0).expand(3, -1, -1).contiguous()


class TrainSketches(Dataset):
    """Raster sketches with their caption and category prompts.

    Each item draws at most ``max_categories`` of the sketch's categories (``None``: all of them, the
    paper); the draw depends only on (seed, epoch, index), so a run is reproducible and a resumed
    run sees the same draws.
    """

    def __init__(
        self,
        table: pd.DataFrame,
        *,
        image_size: int,
        max_categories: int | None,
        seed: int,
    ) -> None:
        required = {"sketch_id", "raster_path", "caption", "categories", "prompts"}
        missing = required - set(table.columns)
        if missing:
            raise SketchSegDataError(f"training table lacks columns {sorted(missing)}")
        self.rows = table.reset_index(drop=True)
        self.image_size = image_size
        self.max_categories = max_categories
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def load_image(self, row: pd.Series) -> np.ndarray:
        """The sketch as float32 ``(image_size, image_size)`` in [0, 1]: its pre-rendered raster."""
        return load_sketch_image(row["raster_path"], self.image_size)

    def __getitem__(self, i: int) -> dict:
        row = self.rows.iloc[i]
        image = self.load_image(row)
        cats = list(row["categories"])
        prompts = list(row["prompts"])
        if self.max_categories is not None and len(cats) > self.max_categories:
            rng = np.random.default_rng([self.seed, self.epoch, int(i)])
            keep = np.sort(rng.choice(len(cats), size=self.max_categories, replace=False))
            cats = [cats[k] for k in keep]
            prompts = [prompts[k] for k in keep]
        return {
            "sketch_id": int(row["sketch_id"]),
            "image": to_pixels(image),
            "caption": str(row["caption"]),
            "categories": cats,
            "prompts": prompts,
        }


def collate_train(items: list[dict]) -> dict:
    return {
        "sketch_id": [it["sketch_id"] for it in items],
        "images": torch.stack([it["image"] for it in items]),
        "captions": [it["caption"] for it in items],
        "categories": [it["categories"] for it in items],
        "prompts": [it["prompts"] for it in items],
    }


@dataclass
class AnnotatedSketch:
    sketch_id: int
    image: torch.Tensor          # (3, S, S) model input in [0, 1]
    classes: list[str]           # the sketch's categories, in global class-index order
    stroke_map: np.ndarray       # (R, R) int32, -1 background
    stroke_labels: np.ndarray    # (n_strokes,) local class index of each stroke
    gt: np.ndarray               # (R, R) local class index, -1 background
    stroke_pixels: np.ndarray | None = None  # (2, P) stroke index, flat pixel: each stroke's own pixels


class AnnotatedSketches(Dataset):
    """FS-COCO-seg sketches rendered from their strokes (reference evaluation protocol).

    Each sketch is rendered at ``render_size`` (coordinates scaled from the 256 frame, 1-px lines,
    3x3 dilation); the class list is the sketch's own ground-truth labels; the model sees the
    render resized to ``image_size``. Where strokes of different classes overlap, the ground truth
    follows ``overlap_rule``:

    * ``lowest_class_index`` (default): the class that comes first in ``class_order``
      (FS-COCO-seg's ``all_classes.json``; alphabetical for labels it lacks);
    * ``most_strokes``: the class with the most strokes covering the pixel, ties alphabetical
      (what the authors' evaluation code does).
    """

    OVERLAP_RULES = ("lowest_class_index", "most_strokes")

    def __init__(
        self,
        table: pd.DataFrame,
        *,
        image_size: int,
        render_size: int = 512,
        thickness: int = 3,
        class_order: Sequence[str] | None = None,
        overlap_rule: str = "lowest_class_index",
    ) -> None:
        if overlap_rule not in self.OVERLAP_RULES:
            raise SketchSegConfigError(
                f"evaluation.overlap_rule must be one of {', '.join(self.OVERLAP_RULES)}, got {overlap_rule!r}"
            )
        if "labels_json" not in table.columns:
            raise SketchSegDataError("evaluation table lacks the labels_json column (FS-COCO-seg labels)")
        self.rows = table.reset_index(drop=True)
        self.image_size = image_size
        self.render_size = render_size
        self.thickness = thickness
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
        strokes = parse_strokes(arr, source=str(vector_path))
        labels = json.loads(row["labels_json"])
        if len(labels) == len(strokes) - 1:  # labelled without the trailing open run (ingestion allows it)
            strokes = parse_strokes(arr, source=str(vector_path), open_tail=False)
        if len(labels) != len(strokes):
            raise SketchSegDataError(
                f"{vector_path}: {len(strokes)} strokes but {len(labels)} labels in {row.get('labels_path')}"
            )
        classes = sorted(set(labels), key=self._rank)
        local = {c: k for k, c in enumerate(classes)}
        stroke_labels = np.array([local[l] for l in labels], dtype=np.int64)
        # lowest class index wins where strokes overlap: order strokes by class, then stroke index
        order = sorted(range(len(strokes)), key=lambda s: (stroke_labels[s], s))
        ink, stroke_map, own = render_labelled_strokes(strokes, self.render_size, thickness=self.thickness,
                                                       order=order)
        if self.overlap_rule == "most_strokes":
            alphabetical = sorted(range(len(classes)), key=lambda k: classes[k])
            gt = gt_label_map_by_count(own, stroke_labels, stroke_map.shape, alphabetical)
        else:
            gt = gt_label_map(stroke_map, stroke_labels)
        small = Image.fromarray(ink).resize((self.image_size, self.image_size), Image.Resampling.BICUBIC)
        image = to_pixels(np.asarray(small, dtype=np.float32) / 255.0)
        return AnnotatedSketch(int(row["sketch_id"]), image, classes, stroke_map, stroke_labels, gt,
                               own.astype(np.int32))


def collate_annotated(items: list[AnnotatedSketch]) -> list[AnnotatedSketch]:
    return items
