"""Participant-based train / val / test splits (paper §4.1)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sketchseg.errors import SketchSegConfigError, SketchSegDataError

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
#: ``splits.expected_sizes`` keys -> the ``check_splits`` counts they are compared with
EXPECTED_SIZE_KEYS = {"train": "n_train", "val": "n_val", "test": "n_test", "test_participants": "n_participants_test"}


def make_protocol_splits(
    manifest: pd.DataFrame,
    *,
    test_participants: Sequence[int],
    val_per_participant: int,
    seed: int,
) -> pd.DataFrame:
    """Split by the paper's participant protocol.

    test = every sketch of ``test_participants``; val = ``val_per_participant`` sketches drawn at
    random (seeded) from every other participant; train = the rest. Only the columns
    ``sketch_id`` and ``participant_id`` are read; the result is ``manifest`` plus a ``split`` column.
    The draw is deterministic for a given ``seed`` and manifest content (ids are sorted first).
    """
    is_int = isinstance(val_per_participant, (int, np.integer)) and not isinstance(val_per_participant, bool)
    if not is_int or val_per_participant < 0:
        raise SketchSegConfigError(
            f"splits.val_per_participant must be a non-negative integer, got {val_per_participant!r}"
        )
    val_per_participant = int(val_per_participant)
    missing_cols = {"sketch_id", "participant_id"} - set(manifest.columns)
    if missing_cols:
        raise SketchSegDataError(f"manifest lacks column(s) {sorted(missing_cols)}")
    missing = sorted(set(int(p) for p in test_participants) - set(manifest["participant_id"].astype(int)))
    if missing:
        raise SketchSegDataError(
            f"splits.test_participants {missing} do not occur in the manifest "
            f"(participants present: {sorted(manifest['participant_id'].unique().tolist())[:10]}...)"
        )
    rng = np.random.default_rng(seed)
    split = pd.Series("train", index=manifest.index, dtype=object)
    test_set = {int(p) for p in test_participants}
    split[manifest["participant_id"].astype(int).isin(test_set)] = "test"
    for pid, group in manifest.groupby("participant_id", sort=True):
        if int(pid) in test_set:
            continue
        ids = np.sort(group["sketch_id"].to_numpy())
        if len(ids) < val_per_participant:
            raise SketchSegDataError(
                f"participant {pid} has {len(ids)} sketches, fewer than the validation quota "
                f"splits.val_per_participant={val_per_participant}"
            )
        if len(ids) == val_per_participant:
            logger.warning("participant %s has exactly %d sketches: all go to val", pid, len(ids))
        chosen = set(rng.choice(ids, size=val_per_participant, replace=False).tolist())
        split[group.index[group["sketch_id"].isin(chosen)]] = "val"
    out = manifest.copy()
    out["split"] = split.astype(str)
    return out


def _with_split(manifest: pd.DataFrame, split: pd.Series) -> pd.DataFrame:
    out = manifest.copy()
    out["split"] = split.astype(str).to_numpy()
    return out


def splits_from_fscoco_seg(manifest: pd.DataFrame) -> pd.DataFrame:
    """Split by FS-COCO-seg membership: ``annotated_split`` "val"/"test" -> that split, else train.

    Raises SketchSegDataError when the column is missing, holds another value, or no sketch at all
    is annotated (FS-COCO-seg not found / not joined at ingestion).
    """
    if "annotated_split" not in manifest.columns:
        raise SketchSegDataError(
            "manifest has no 'annotated_split' column; it is written by ingest_fscoco when the "
            "FS-COCO-seg root is given"
        )
    raw = manifest["annotated_split"]
    norm = raw.where(raw.notna(), None).map(lambda v: None if v is None else str(v).strip().lower())
    norm = norm.map(lambda v: None if v in (None, "", "none", "nan") else v)
    bad = sorted({v for v in norm.dropna().unique() if v not in ("val", "test")})
    if bad:
        raise SketchSegDataError(
            f"manifest column annotated_split holds {bad}; expected 'val', 'test' or empty"
        )
    split = norm.fillna("train")
    counts = split.value_counts()
    if counts.get("val", 0) == 0 and counts.get("test", 0) == 0:
        raise SketchSegDataError(
            "splits.mode=fscoco_seg but no manifest sketch is annotated (annotated_split empty "
            "everywhere): is the FS-COCO-seg root present and do its sketch ids match FS-COCO?"
        )
    for name in ("val", "test"):
        if counts.get(name, 0) == 0:
            logger.warning("splits.mode=fscoco_seg: the %s split is empty", name)
    return _with_split(manifest, split)


def splits_from_file(manifest: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Read the split of every manifest sketch from a CSV with columns ``sketch_id,split``.

    Raises SketchSegDataError naming ``path`` when the file is missing or malformed, names an
    unknown split, repeats a sketch, lists a sketch not in the manifest, or omits one that is.
    """
    path = Path(path)
    if not path.is_file():
        raise SketchSegDataError(f"split file expected at {path} (CSV with columns sketch_id,split)")
    try:
        table = pd.read_csv(path, dtype={"split": str}, skipinitialspace=True)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise SketchSegDataError(f"split file {path} cannot be read as CSV: {exc}") from exc
    table.columns = [str(c).strip() for c in table.columns]
    missing_cols = {"sketch_id", "split"} - set(table.columns)
    if missing_cols:
        raise SketchSegDataError(
            f"split file {path} lacks column(s) {sorted(missing_cols)}; has {list(table.columns)}"
        )
    ids = pd.to_numeric(table["sketch_id"], errors="coerce")
    bad_rows = table.index[ids.isna() | (ids != ids.round())].tolist()
    if bad_rows:
        raise SketchSegDataError(
            f"split file {path}: non-integer sketch_id in data row(s) {[r + 1 for r in bad_rows[:10]]}"
        )
    table["sketch_id"] = ids.astype("int64")
    table["split"] = table["split"].fillna("").astype(str).str.strip().str.lower()
    unknown = sorted(set(table["split"]) - set(SPLITS))
    if unknown:
        raise SketchSegDataError(f"split file {path}: unknown split name(s) {unknown}; allowed: {list(SPLITS)}")
    dup = table["sketch_id"][table["sketch_id"].duplicated()]
    if len(dup):
        raise SketchSegDataError(f"split file {path} lists sketch_id(s) more than once: {_head(dup.unique())}")
    manifest_ids = manifest["sketch_id"].astype("int64")
    extra = sorted(set(table["sketch_id"]) - set(manifest_ids))
    if extra:
        raise SketchSegDataError(
            f"split file {path} names {len(extra)} sketch_id(s) absent from the manifest: {_head(extra)}"
        )
    absent = sorted(set(manifest_ids) - set(table["sketch_id"]))
    if absent:
        raise SketchSegDataError(
            f"split file {path} has no split for {len(absent)} manifest sketch(es): {_head(absent)}; "
            "every sketch must be listed"
        )
    lookup = table.set_index("sketch_id")["split"]
    return _with_split(manifest, manifest_ids.map(lookup))


def _head(values: Sequence[object] | np.ndarray, n: int = 10) -> str:
    values = [v.item() if isinstance(v, np.generic) else v for v in list(values)]
    more = f" ... (+{len(values) - n})" if len(values) > n else ""
    return f"{values[:n]}{more}"


def check_splits(df: pd.DataFrame, test_participants: Sequence[int] | None = None) -> dict[str, int]:
    """Validate a split table and summarise it.

    Raises SketchSegDataError when a sketch_id occurs twice (in one split or two), a split value is
    unknown, or a sketch of a ``test_participants`` participant is outside the test split. Without
    ``test_participants``, a participant found in test and in train/val is only logged as a warning.

    Returns
    -------
    dict
        ``n_train, n_val, n_test, n_sketches, n_participants_train, n_participants_val,
        n_participants_test`` (participant counts only when ``participant_id`` is a column).
    """
    missing = {"sketch_id", "split"} - set(df.columns)
    if missing:
        raise SketchSegDataError(f"split table lacks column(s) {sorted(missing)}")
    unknown = sorted({str(v) for v in df["split"].unique()} - set(SPLITS))
    if unknown:
        raise SketchSegDataError(f"unknown split value(s) {unknown}; allowed: {list(SPLITS)}")
    dup_mask = df["sketch_id"].duplicated(keep=False)
    if dup_mask.any():
        dups = df.loc[dup_mask].groupby("sketch_id")["split"].agg(lambda s: sorted(set(s)))
        cross = {int(k): v for k, v in dups.items() if len(v) > 1}
        detail = f"; in several splits: {_head(list(cross.items()))}" if cross else ""
        raise SketchSegDataError(
            f"{len(dups)} sketch_id(s) occur more than once in the split table: {_head(dups.index.tolist())}{detail}"
        )
    has_pid = "participant_id" in df.columns
    if test_participants is not None:
        if not has_pid:
            raise SketchSegDataError("split table has no participant_id column; cannot check test participants")
        test_set = {int(p) for p in test_participants}
        leaked = df[df["participant_id"].astype(int).isin(test_set) & (df["split"] != "test")]
        if len(leaked):
            by_pid = leaked.groupby("participant_id")["split"].agg(lambda s: dict(s.value_counts()))
            raise SketchSegDataError(
                f"test participant(s) {sorted(int(p) for p in by_pid.index)} have sketches outside the "
                f"test split: {({int(k): {str(a): int(b) for a, b in v.items()} for k, v in by_pid.items()})}"
            )
    elif has_pid:
        test_pids = set(df.loc[df["split"] == "test", "participant_id"].astype(int))
        fit_pids = set(df.loc[df["split"] != "test", "participant_id"].astype(int))
        shared = sorted(test_pids & fit_pids)
        if shared:
            logger.warning(
                "%d participant(s) have sketches in test and in train/val (style leakage): %s",
                len(shared),
                _head(shared),
            )
    summary: dict[str, int] = {f"n_{s}": int((df["split"] == s).sum()) for s in SPLITS}
    summary["n_sketches"] = int(len(df))
    if has_pid:
        for s in SPLITS:
            summary[f"n_participants_{s}"] = int(df.loc[df["split"] == s, "participant_id"].nunique())
    logger.info("splits: %s", summary)
    return summary


def split_summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per split (train, val, test): columns split, n_sketches, n_participants."""
    rows = []
    for s in SPLITS:
        part = df[df["split"] == s]
        n_pid = int(part["participant_id"].nunique()) if "participant_id" in df.columns else 0
        rows.append((s, int(len(part)), n_pid))
    return pd.DataFrame(rows, columns=["split", "n_sketches", "n_participants"]).astype(
        {"n_sketches": "int64", "n_participants": "int64"}
    )


def make_splits(
    manifest: pd.DataFrame,
    *,
    mode: str,
    test_participants: Sequence[int] | None = None,
    val_per_participant: int | None = None,
    seed: int | None = None,
    split_file: str | Path | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Assign every sketch to train / val / test by ``mode`` (``splits.mode``) and check the result.

    ``protocol``: the paper's participant protocol (:func:`make_protocol_splits`; needs
    ``test_participants``, ``val_per_participant`` and ``seed``); ``fscoco_seg``: FS-COCO-seg's own
    val/test folders (:func:`splits_from_fscoco_seg`); ``file``: a ``sketch_id,split`` CSV
    (:func:`splits_from_file`). Outside ``fscoco_seg``, sketches of FS-COCO-seg's val/test folders
    that land in train are reported with a warning.

    Returns
    -------
    (table, counts)
        the manifest plus a ``split`` column, and the :func:`check_splits` counts.
    """
    participants = [int(p) for p in test_participants or []]
    if mode == "protocol":
        if not participants:
            raise SketchSegConfigError(
                "splits.mode is 'protocol' but splits.test_participants is empty: list the participants whose "
                "sketches form the test set (the paper: 5 participants, 500 sketches), or use splits.mode: fscoco_seg"
            )
        if val_per_participant is None or seed is None:
            raise SketchSegConfigError("splits.mode is 'protocol' but splits.val_per_participant or splits.seed is not set")
        table = make_protocol_splits(
            manifest,
            test_participants=participants,
            val_per_participant=int(val_per_participant),
            seed=int(seed),
        )
    elif mode == "fscoco_seg":
        table = splits_from_fscoco_seg(manifest)
        participants = sorted(table.loc[table["split"] == "test", "participant_id"].unique().tolist())
    elif mode == "file":
        if not split_file:
            raise SketchSegConfigError("splits.mode is 'file' but splits.split_file is not set")
        table = splits_from_file(manifest, split_file)
        participants = []
    else:
        raise SketchSegConfigError(f"splits.mode must be protocol, fscoco_seg or file, got {mode!r}")
    counts = check_splits(table, participants if mode == "protocol" else None)
    if mode != "fscoco_seg" and "annotated_split" in table.columns:
        moved = table[(table["split"] == "train") & table["annotated_split"].isin(["val", "test"])]
        if len(moved):
            logger.warning(
                "splits.mode=%s puts %d sketches of FS-COCO-seg's own val/test folders into train "
                "(e.g. %s): results are then not comparable to the published split",
                mode, len(moved), moved["sketch_id"].head(5).tolist(),
            )
    return table, counts


def check_expected_sizes(counts: dict[str, int], expected: dict[str, int | None] | None) -> list[str]:
    """Warn where the split sizes differ from ``splits.expected_sizes`` (conf/base: the paper's
    train 9025 / val 475 / test 500 sketches, 5 test participants): another FS-COCO release or a
    partial download makes the numbers incomparable. Returns the differing names."""
    if not expected:
        return []
    keys = EXPECTED_SIZE_KEYS
    unknown = sorted(set(expected) - set(keys))
    if unknown:
        raise SketchSegConfigError(f"splits.expected_sizes has unknown keys {unknown}; known: {sorted(keys)}")
    differ = [k for k, v in expected.items() if v is not None and keys[k] in counts and counts[keys[k]] != int(v)]
    if differ:
        logger.warning(
            "split sizes differ from splits.expected_sizes (conf/base: the paper's §4.1 split): %s; results "
            "are not comparable to those of the expected split", ", ".join(f"{k} {counts[keys[k]]} (expected {expected[k]})" for k in differ),
        )
    return differ
