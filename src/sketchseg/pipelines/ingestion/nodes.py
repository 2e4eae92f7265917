"""FS-COCO ingestion and participant splits."""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Any

import pandas as pd

from sketchseg.data.fscoco import ingest_fscoco
from sketchseg.data.splits import (
    check_splits,
    make_protocol_splits,
    split_summary,
    splits_from_file,
    splits_from_fscoco_seg,
)
from sketchseg.errors import SketchSegConfigError
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


def compare_with_paper(counts: dict[str, int], expected: dict[str, Any] | None) -> list[str]:
    """Warn where the split sizes differ from ``splits.expected_sizes`` (conf/base: the paper's
    train 9025 / val 475 / test 500 sketches, 5 test participants): another FS-COCO release or a
    partial download makes the numbers incomparable. Returns the differing names."""
    if not expected:
        return []
    keys = {"train": "n_train", "val": "n_val", "test": "n_test", "test_participants": "n_participants_test"}
    unknown = sorted(set(expected) - set(keys))
    if unknown:
        raise SketchSegConfigError(f"splits.expected_sizes has unknown keys {unknown}; known: {sorted(keys)}")
    differ = [k for k, v in expected.items() if v is not None and keys[k] in counts and counts[keys[k]] != int(v)]
    if differ:
        logger.warning(
            "split sizes differ from splits.expected_sizes (the paper's §4.1 split): %s; results are not "
            "comparable to the paper's", ", ".join(f"{k} {counts[keys[k]]} (expected {expected[k]})" for k in differ),
        )
    return differ


def split(manifest: pd.DataFrame, splits: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Assign every sketch to train / val / test (paper §4.1) and check the invariants."""
    mode = splits["mode"]
    test_participants = [int(p) for p in splits.get("test_participants") or []]
    if mode == "protocol":
        if not test_participants:
            raise SketchSegConfigError(
                "splits.mode is 'protocol' but splits.test_participants is empty: list the participants whose "
                "sketches form the test set (the paper: 5 participants, 500 sketches), or use splits.mode: fscoco_seg"
            )
        table = make_protocol_splits(
            manifest,
            test_participants=test_participants,
            val_per_participant=int(splits["val_per_participant"]),
            seed=int(splits["seed"]),
        )
    elif mode == "fscoco_seg":
        table = splits_from_fscoco_seg(manifest)
        test_participants = sorted(table.loc[table["split"] == "test", "participant_id"].unique().tolist())
    elif mode == "file":
        if not splits.get("split_file"):
            raise SketchSegConfigError("splits.mode is 'file' but splits.split_file is not set")
        table = splits_from_file(manifest, splits["split_file"])
        test_participants = []
    else:
        raise SketchSegConfigError(f"splits.mode must be protocol, fscoco_seg or file, got {mode!r}")
    counts = check_splits(table, test_participants if mode == "protocol" else None)
    if mode != "fscoco_seg" and "annotated_split" in table.columns:
        moved = table[(table["split"] == "train") & table["annotated_split"].isin(["val", "test"])]
        if len(moved):
            logger.warning(
                "splits.mode=%s puts %d sketches of FS-COCO-seg's own val/test folders into train "
                "(e.g. %s): results are then not comparable to the published split",
                mode, len(moved), moved["sketch_id"].head(5).tolist(),
            )
    compare_with_paper(counts, splits.get("expected_sizes"))
    summary = split_summary(table)
    logger.info("splits (%s): %s", mode, counts)
    return table, summary, as_metric_items({k: v for k, v in counts.items() if isinstance(v, (int, float))})
