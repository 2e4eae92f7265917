"""The training set: raster sketches with their caption and category prompts, as a torch dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from sketchseg.data.strokes import load_sketch_image
from sketchseg.errors import SketchSegDataError


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
