"""Write the generated FS-COCO-shaped sample dataset."""

from __future__ import annotations

import logging
from typing import Any

from sketchseg.data.sample import generate_sample

logger = logging.getLogger(__name__)


def make_sample(sample: dict[str, Any], data: dict[str, Any], splits: dict[str, Any]) -> dict[str, Any]:
    """Generate the sample under ``data.fscoco_root`` / ``data.fscoco_seg_root``.

    Its FS-COCO-seg val/test folders annotate exactly the sketches that ``splits`` (protocol mode,
    same participants and seed) puts in val and test.
    """
    summary = generate_sample(
        data["fscoco_root"],
        data["fscoco_seg_root"],
        n_participants=int(sample["n_participants"]),
        sketches_per_participant=int(sample["sketches_per_participant"]),
        seed=int(sample["seed"]),
        test_participants=tuple(int(p) for p in splits["test_participants"]),
        val_per_participant=int(splits["val_per_participant"]),
        raster_size=int(sample.get("raster_size", 256)),
        write_photos=bool(sample.get("write_photos", True)),
    )
    logger.info("sample written: %s", summary)
    return {k: (v if isinstance(v, (int, float, str, bool, list, dict)) or v is None else str(v)) for k, v in summary.items()}
