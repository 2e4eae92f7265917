"""FS-COCO ingestion and participant splits."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from sketchseg.data.fscoco import ingest_fscoco
from sketchseg.data.quarantine import quarantine_counts
from sketchseg.data.splits import check_expected_sizes, make_splits, split_summary
from sketchseg.tracking import as_metric_items

logger = logging.getLogger(__name__)


def ingest(data: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Read FS-COCO (+ FS-COCO-seg labels) into a manifest and a quarantine table."""
    manifest, quarantine = ingest_fscoco(
        data["fscoco_root"],
        data["fscoco_seg_root"],
        max_rejection_rate=float(data["max_rejection_rate"]),
        workers=data.get("workers"),
        max_file_bytes=data.get("max_file_bytes"),
        max_raster_pixels=data.get("max_raster_pixels"),
    )
    counts = {
        "n_sketches": len(manifest),
        "n_quarantined": len(quarantine),
        "n_participants": int(manifest["participant_id"].nunique()) if len(manifest) else 0,
        "n_annotated_val": int((manifest["annotated_split"] == "val").sum()) if len(manifest) else 0,
        "n_annotated_test": int((manifest["annotated_split"] == "test").sum()) if len(manifest) else 0,
    }
    counts.update(quarantine_counts(quarantine))
    logger.info("ingestion: %s", counts)
    if len(quarantine):
        logger.warning(
            "%d quarantined entries (see the ingestion_quarantine table): %s",
            len(quarantine), {k: v for k, v in counts.items() if k.startswith("reason.")},
        )
    return manifest, quarantine, as_metric_items(counts)


def split(manifest: pd.DataFrame, splits: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Assign every sketch to train / val / test (paper §4.1), check the invariants and compare the
    sizes with ``splits.expected_sizes``."""
    mode = splits["mode"]
    table, counts = make_splits(
        manifest,
        mode=mode,
        test_participants=splits.get("test_participants"),
        val_per_participant=splits.get("val_per_participant"),
        seed=splits.get("seed"),
        split_file=splits.get("split_file"),
    )
    check_expected_sizes(counts, splits.get("expected_sizes"))
    summary = split_summary(table)
    logger.info("splits (%s): %s", mode, counts)
    return table, summary, as_metric_items({k: v for k, v in counts.items() if isinstance(v, (int, float))})
