"""The validation set rendered once and kept in memory (``training.cache_val_set``).

Rendering the annotated sketches from their strokes is the slow part of a validation pass; the
cache renders them on the first pass (with the evaluation's loader workers) and keeps compact
copies (one shared grey channel, small label dtypes: the same values), so later epochs only
run the model.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from sketchseg.data.annotated import collate_annotated
from sketchseg.engine import distributed

logger = logging.getLogger(__name__)


class InMemory(Dataset):
    """Materialised items of a dataset; other attributes (``render_size``) read from the source."""

    def __init__(self, source: Any, items: list) -> None:
        self.source = source
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]

    def __getattr__(self, name: str) -> Any:
        if name in ("source", "items"):
            raise AttributeError(name)
        return getattr(self.source, name)


def compact(item: Any) -> Any:
    """An annotated sketch with a shared grey channel and small label dtypes (same values)."""
    if not dataclasses.is_dataclass(item):
        return item
    changes: dict[str, Any] = {}
    image = getattr(item, "image", None)
    if torch.is_tensor(image) and image.ndim == 3 and image.shape[0] == 3 and torch.equal(image[0], image[1]) \
            and torch.equal(image[0], image[2]):
        changes["image"] = image[:1].clone().expand(3, -1, -1)
    gt = getattr(item, "gt", None)
    if isinstance(gt, np.ndarray) and gt.size and -1 <= gt.min() and gt.max() < np.iinfo(np.int16).max:
        changes["gt"] = gt.astype(np.int16)
    return dataclasses.replace(item, **changes) if changes else item


def cache_dataset(dataset: Any, num_workers: int = 0, batch_size: int = 16) -> InMemory:
    """Load (render) every item of ``dataset`` once, with ``num_workers`` loader processes."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_annotated)
    items = [compact(it) for batch in loader for it in batch]
    return InMemory(dataset, items)


class ValidationData:
    """This process's validation sketches (its shard under data parallel), cached on first use
    when ``cache`` is true. Built lazily: the first :meth:`dataset` call renders them."""

    def __init__(self, val_set: Any, info: distributed.DistInfo, *, cache: bool, batch_size: int,
                 num_workers: int) -> None:
        self.val_set = val_set
        self.info = info
        self.cache = cache
        self.batch_size = batch_size
        self.num_workers = num_workers
        self._data: Any = None

    @property
    def empty(self) -> bool:
        return self.val_set is None or len(self.val_set) == 0

    def dataset(self) -> Any:
        if self._data is None:
            info = self.info
            data: Any = distributed.Shard(self.val_set, info.rank, info.world_size) if info.enabled else self.val_set
            if self.cache:
                t = time.perf_counter()
                data = cache_dataset(data, num_workers=self.num_workers, batch_size=self.batch_size)
                logger.info("validation set cached: %d sketches rendered in %.1fs", len(data), time.perf_counter() - t)
            self._data = data
        return self._data
