"""FS-COCO ingestion and participant splits."""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Any

import pandas as pd

from sketchseg.data.fscoco import ingest_fscoco
from sketchseg.data.splits import check_expected_sizes, make_splits, split_summary
from sketchseg.tracking import as_metric_items

logger = logging.getLogger(__name__)


def quarantine_counts(quarantine: pd.DataFrame) -> dict[str, int]:
    """Counts per quarantine kind and per reason class (the text before any ':' or file detail)."""
    counts: Counter[str] = Counter()
    for kind, reason in zip(quarantine.get("kind", ["sketch"] * len(quarantine)), quarantine["reason"]):
        counts[f"quarantine_{kind}"] += 1
        for part in str(reason).split("; "):
            text = re.split(r":| in | as | also in ", part, maxsplit=1)[0]  # the reason, not the file or id
            head = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
            head = re.sub(r"_\d+(_\d+)*", "", head)[:80]  # "label count 12 != 13" -> "label_count"
            counts[f"reason.{head}"] += 1
    return dict(counts)


def ingest(data: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Read FS-COCO (+ FS-COCO-seg labels) into a manifest and a quarantine table."""
    manifest, quarantine = ingest_fscoco(
        data["fscoco_root"],
        data["fscoco_seg_root"],
        max_rejection_rate=float(data["max_rejection_rate"]),
        workers=data.get("workers"),
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
