"""Ingestion of FS-COCO (and the FS-COCO-seg val/test annotations) into a manifest + quarantine."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sketchseg.data.quarantine import QUARANTINE_COLUMNS, Quarantine, outside_reason, outside_root
from sketchseg.data.sketch_checks import check_batch, count_strokes, entry_is_dir, ingestion_limits, list_entries
from sketchseg.errors import SketchSegDataError
from sketchseg.limits import DEFAULT_MAX_FILE_BYTES, file_problem
from sketchseg.progress import Progress
from sketchseg.workers import worker_pool

logger = logging.getLogger(__name__)

__all__ = ["ingest_fscoco", "MANIFEST_COLUMNS", "QUARANTINE_COLUMNS"]

MANIFEST_COLUMNS = [
    "sketch_id", "participant_id", "stem", "raster_path", "vector_path", "caption", "n_strokes",
    "annotated_split", "labels_path", "seg_vector_path", "labels_json",
    "raster_width", "raster_height", "raster_mode", "inverted",
]

# kind -> (folder, accepted suffixes, what a missing one is called)
_KINDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "raster": ("raster_sketches", (".jpg", ".jpeg", ".png"), "missing raster sketch"),
    "vector": ("vector_sketches", (".npy",), "missing vector sketch"),
    "text": ("text", (".txt",), "missing caption file"),
}
_SEG_SPLITS = ("val", "test")
_HOW_TO_GET = (
    "download FS-COCO (fscoco.tar.gz, https://github.com/pinakinathc/fscoco) and unpack it there, "
    "or run `kedro run --pipelines=make_sample --env=sample` to generate the synthetic sample"
)
_BATCH = 200
_INLINE_BELOW = 300  # fewer candidates than this: no process pool


def _as_int(name: str) -> int | None:
    return int(name) if name.isascii() and name.isdigit() else None


def _key(name: str) -> int | str:
    v = _as_int(name)
    return name if v is None else v


def _sort_key(k: tuple[int | str, int | str]) -> tuple[Any, ...]:
    return tuple((isinstance(p, str), p if isinstance(p, str) else "", p if isinstance(p, int) else 0) for p in k)


def _run_checks(tasks: list[tuple[str, str, str]], workers: int, progress: bool,
                limits: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    batches = [tasks[i : i + _BATCH] for i in range(0, len(tasks), _BATCH)]
    check = partial(check_batch, limits=dict(limits or {}))
    out: list[dict[str, Any]] = []
    with Progress(total=len(tasks), desc="ingest FS-COCO", unit="sketch", enabled=progress) as bar:
        if workers <= 1 or len(tasks) < _INLINE_BELOW:
            for b in batches:
                out += check(b)
                bar.update(len(b))
        else:
            with worker_pool(workers) as pool:  # a stop signal never lands in a fork; workers end with the block
                for b, res in zip(batches, pool.imap(check, batches)):
                    out += res
                    bar.update(len(b))
    return out


# --------------------------------------------------------------------------------------------------
# scanning
# --------------------------------------------------------------------------------------------------
def _scan_fscoco(root: Path, q: Quarantine) -> dict[tuple[int | str, int | str], dict[str, Any]]:
    """Map (participant key, stem key) -> {"raster"/"vector"/"text": path, "pdir": folder name}."""
    cands: dict[tuple[int | str, int | str], dict[str, Any]] = {}
    for kind, (folder, suffixes, _) in _KINDS.items():
        base = root / folder
        for pentry in list_entries(base, q, None):
            is_dir, why = entry_is_dir(pentry)
            if not is_dir:
                q.add(pentry.path, None, None, f"unexpected file (expected participant folders in {folder}/)"
                      + (f": {why}" if why else ""), "file")
                continue
            pkey = _key(pentry.name)
            pid = pkey if isinstance(pkey, int) else None
            for f in list_entries(Path(pentry.path), q, pid):
                stem, suffix = os.path.splitext(f.name)
                # a symlink loop, a FIFO, an unreadable file: a candidate all the same; its check
                # quarantines the one sketch with the reason (file_problem), the scan goes on
                if entry_is_dir(f)[0]:
                    q.add(f.path, None, pid, "unexpected directory", "file")
                    continue
                if suffix.lower() not in suffixes:
                    q.add(f.path, _as_int(stem), pid,
                          f"unexpected file (expected {'/'.join(suffixes)} in {folder}/)", "file")
                    continue
                key = (pkey, _key(stem))
                entry = cands.setdefault(key, {"pdir": pentry.name, "stem": stem})
                if kind in entry:
                    q.add(f.path, _as_int(stem), pid, f"duplicate file for the same sketch as {entry[kind]}", "file")
                    continue
                entry[kind] = f.path
                if kind == "raster":
                    entry["stem"] = stem  # the raster's stem names the sketch
    return cands


def _reason_key(reason: str) -> str:
    first = reason.split("; ")[0]
    first = re.sub(r"\s*\(.*\)", "", first.split(": ")[0])
    return re.sub(r"\d+", "N", first)


def _load_labels(path: Path, max_bytes: int | None = None) -> tuple[list[str] | None, str | None]:
    why = file_problem(path, max_bytes)
    if why:
        return None, f"label file {why}"
    try:
        labels = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"label file does not parse: {exc} in {path}"
    if not isinstance(labels, list) or not all(isinstance(v, str) for v in labels):
        return None, f"label file is not a list of strings in {path}"
    return labels, None


def _ingest_annotations(seg_root: Path, manifest: pd.DataFrame, q: Quarantine, n_by_id: dict[int, int],
                        max_file_bytes: Mapping[str, int] | None = None) -> None:
    """Fill annotated_split / labels_path / seg_vector_path / labels_json in place."""
    cap = dict(max_file_bytes or DEFAULT_MAX_FILE_BYTES)
    pid_of = dict(zip(manifest["sketch_id"].tolist(), manifest["participant_id"].tolist()))
    row_of = {sid: i for i, sid in enumerate(manifest["sketch_id"].tolist())}
    ann: dict[str, list[Any]] = {c: [None] * len(manifest) for c in
                                 ("annotated_split", "labels_path", "seg_vector_path", "labels_json")}
    n_ok, n_bad, differ, open_tails = 0, 0, 0, 0
    seg_real = os.path.realpath(seg_root)
    for split in _SEG_SPLITS:
        sd = seg_root / split
        if not sd.is_dir():
            logger.warning("FS-COCO-seg split folder %s is missing: no %s annotations", sd, split)
            continue
        files: dict[int, dict[str, Path]] = {}
        for sub, suffix, kind in (("classes", ".json", "labels"), ("vector_sketches", ".npy", "vector")):
            d = sd / sub
            if not d.is_dir():
                logger.warning("FS-COCO-seg folder %s is missing", d)
                continue
            for entry in list_entries(d, q, None):
                f = Path(entry.path)
                sid = _as_int(f.stem)
                if entry_is_dir(entry)[0] or f.suffix.lower() != suffix:
                    q.add(f, sid, pid_of.get(sid), f"unexpected file (expected {suffix} in {split}/{sub}/)", "file")
                    continue
                if sid is None:
                    q.add(f, None, None, "file stem is not an integer id", "annotation")
                    continue
                if kind in files.setdefault(sid, {}):
                    q.add(f, sid, pid_of.get(sid), f"duplicate file for the same sketch as {files[sid][kind]}", "annotation")
                    continue
                files[sid][kind] = f
        for sid in sorted(files):
            got = files[sid]
            any_path = got.get("labels", got.get("vector"))
            pid = pid_of.get(sid)
            if sid not in row_of:
                q.add(any_path, sid, None, f"annotated sketch {sid} ({split}) is not in the FS-COCO manifest", "annotation")
                n_bad += 1
                continue
            i = row_of[sid]
            if ann["annotated_split"][i] is not None:
                q.add(any_path, sid, pid,
                      f"sketch {sid} is annotated in both {ann['annotated_split'][i]} and {split}; "
                      f"keeping {ann['annotated_split'][i]}", "annotation")
                n_bad += 1
                continue
            # The folder decides the split, also when the files below are missing or unusable: such
            # a sketch stays in val/test unscored (never in train, which would leak test participants).
            ann["annotated_split"][i] = split
            unscored = f"; the sketch stays in {split}, not scored"
            if "labels" not in got:
                q.add(got["vector"], sid, pid,
                      f"missing label file (expected {sd / 'classes' / (got['vector'].stem + '.json')})" + unscored,
                      "annotation")
                n_bad += 1
                continue
            if "vector" not in got:
                q.add(got["labels"], sid, pid,
                      f"missing vector file (expected {sd / 'vector_sketches' / (got['labels'].stem + '.npy')})"
                      + unscored, "annotation")
                n_bad += 1
                continue
            escapes = [(p, real) for p in (got["labels"], got["vector"]) if (real := outside_root(p, seg_real))]
            if escapes:
                q.add(escapes[0][0], sid, pid, outside_reason(escapes[0][1]) + unscored, "annotation")
                n_bad += 1
                continue
            labels, why = _load_labels(got["labels"], cap.get("labels"))
            if why:
                q.add(got["labels"], sid, pid, why + unscored, "annotation")
                n_bad += 1
                continue
            counts, why = count_strokes(str(got["vector"]), cap.get("vector"))
            if why:
                q.add(got["vector"], sid, pid, why + unscored, "annotation")
                n_bad += 1
                continue
            n_strokes, n_closed = counts
            if len(labels) not in (n_strokes, n_closed):
                q.add(got["labels"], sid, pid,
                      f"label count {len(labels)} != stroke count {n_strokes} in {got['labels']}" + unscored,
                      "annotation")
                n_bad += 1
                continue
            if len(labels) != n_strokes:  # labels for the closed strokes: the open trailing run is not scored
                open_tails += 1
                n_strokes = n_closed
            ann["labels_path"][i] = str(got["labels"])
            ann["seg_vector_path"][i] = str(got["vector"])
            ann["labels_json"][i] = json.dumps(labels, ensure_ascii=False)
            differ += int(n_by_id.get(sid) != n_strokes)
            n_ok += 1
    for col, vals in ann.items():
        manifest[col] = pd.Series(vals, index=manifest.index, dtype=object)
    if differ:
        logger.warning("%d annotated sketches have a different stroke count in FS-COCO-seg than in FS-COCO", differ)
    if open_tails:
        logger.info("%d annotated sketches end in an open run of points that their labels leave out: "
                    "it is not rendered for scoring", open_tails)
    logger.info("FS-COCO-seg annotations: %d accepted, %d quarantined", n_ok, n_bad)


def _empty_manifest() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in MANIFEST_COLUMNS})


# --------------------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------------------
def check_fscoco_root(fscoco_root: str | Path) -> Path:
    """``fscoco_root`` as a Path when it holds FS-COCO's three folders; else one-line SketchSegDataError
    saying how to get it (a run's pre-flight calls this before anything starts)."""
    root = Path(fscoco_root)
    if not root.is_dir():
        raise SketchSegDataError(f"FS-COCO not found: expected at {root}; {_HOW_TO_GET}")
    missing = [f"{folder}/" for folder, _, _ in _KINDS.values() if not (root / folder).is_dir()]
    if missing:
        raise SketchSegDataError(
            f"FS-COCO at {root} is incomplete: {', '.join(missing)} missing (expected at "
            f"{', '.join(str(root / m) for m in missing)}); {_HOW_TO_GET}"
        )
    return root


def ingest_fscoco(
    fscoco_root: str | Path,
    fscoco_seg_root: str | Path | None,
    *,
    max_rejection_rate: float,
    workers: int | None = None,
    progress: bool = True,
    max_file_bytes: Mapping[str, int] | None = None,
    max_raster_pixels: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scan FS-COCO (+ FS-COCO-seg val/test) and return ``(manifest, quarantine)``.

    Every file is checked before it is read (``sketchseg.limits.file_problem``): a symlink loop, a
    FIFO or device, a directory under a file's name, a file that cannot be read or one larger than
    its ``max_file_bytes`` cap (per type: caption, vector, raster, labels; defaults
    ``sketchseg.limits.DEFAULT_MAX_FILE_BYTES``) quarantines its sketch (or its annotation) with the
    reason; a raster with more than ``max_raster_pixels`` pixels (default
    ``sketchseg.limits.MAX_IMAGE_PIXELS``, read from the header) too.

    Every candidate sketch (a (participant, stem) pair seen in raster_sketches/, vector_sketches/ or
    text/) ends up either in the manifest or as exactly one ``kind == "sketch"`` row of the
    quarantine, with a precise reason. Unexpected or duplicate files are ``kind == "file"`` rows and
    problems with FS-COCO-seg annotations ``kind == "annotation"`` rows (the sketch itself stays in
    the manifest, unannotated).

    Raises
    ------
    SketchSegDataError
        if ``fscoco_root`` (or one of its three folders) is missing, or if more than
        ``max_rejection_rate`` of the candidate sketches are quarantined.
    """
    t0 = time.perf_counter()
    root = check_fscoco_root(fscoco_root)
    if workers is None:
        workers = min(os.cpu_count() or 1, 8)
    limits = ingestion_limits(max_file_bytes, max_raster_pixels)

    q = Quarantine()
    root_real = os.path.realpath(root)
    cands = _scan_fscoco(root, q)
    n_candidates = len(cands)
    if n_candidates == 0:
        raise SketchSegDataError(f"no sketches found under {root} (raster_sketches/<pid>/<stem>.jpg ...); {_HOW_TO_GET}")

    tasks: list[tuple[str, str, str]] = []
    task_keys: list[tuple[int, int]] = []
    for key in sorted(cands, key=_sort_key):
        c = cands[key]
        pkey, skey = key
        pid = pkey if isinstance(pkey, int) else None
        sid = skey if isinstance(skey, int) else None
        any_path = c.get("raster", c.get("vector", c.get("text")))
        if pid is None:
            q.add(any_path, sid, None, f"participant folder name is not an integer ({c['pdir']!r})", "sketch")
            continue
        if sid is None:
            q.add(any_path, None, pid, f"file stem is not an integer id ({c['stem']!r})", "sketch")
            continue
        gaps = [what for kind, (_, _, what) in _KINDS.items() if kind not in c]
        if gaps:
            q.add(any_path, sid, pid, "; ".join(gaps), "sketch")
            continue
        escapes = [(c[k], real) for k in _KINDS if (real := outside_root(c[k], root_real))]
        if escapes:  # a symlink out of the data root: its content is not this sketch's
            q.add(escapes[0][0], sid, pid, "; ".join(outside_reason(r) for _, r in escapes), "sketch")
            continue
        tasks.append((c["raster"], c["vector"], c["text"]))
        task_keys.append((pid, sid))

    results = _run_checks(tasks, int(workers), progress, limits)
    rows: list[dict[str, Any]] = []
    for (pid, sid), task, res in zip(task_keys, tasks, results):
        if res["problems"]:
            q.add(res["problems"][0][0], sid, pid, "; ".join(why for _, why in res["problems"]), "sketch")
            continue
        info = res["info"]
        rows.append({
            "sketch_id": sid, "participant_id": pid, "stem": cands[(pid, sid)]["stem"],
            "raster_path": task[0], "vector_path": task[1], "caption": res["caption"],
            "n_strokes": res["n_strokes"], "raster_width": info["width"], "raster_height": info["height"],
            "raster_mode": info["mode"], "inverted": info["inverted"],
        })

    # duplicate sketch ids across participants: keep the lowest participant
    rows.sort(key=lambda r: (r["sketch_id"], r["participant_id"]))
    kept: list[dict[str, Any]] = []
    for r in rows:
        if kept and kept[-1]["sketch_id"] == r["sketch_id"]:
            q.add(r["raster_path"], r["sketch_id"], r["participant_id"],
                  f"duplicate sketch_id {r['sketch_id']} also in participant {kept[-1]['participant_id']}", "sketch")
            continue
        kept.append(r)

    if kept:
        manifest = pd.DataFrame(kept)
        manifest = manifest.sort_values(["participant_id", "sketch_id"], kind="stable").reset_index(drop=True)
        for col in ("sketch_id", "participant_id", "n_strokes", "raster_width", "raster_height"):
            manifest[col] = manifest[col].astype(np.int64)
        manifest["inverted"] = manifest["inverted"].astype(bool)
        for c in ("annotated_split", "labels_path", "seg_vector_path", "labels_json"):
            manifest[c] = pd.Series([None] * len(manifest), dtype=object)
        manifest = manifest[MANIFEST_COLUMNS]
    else:
        manifest = _empty_manifest()

    sketch_rows = [r for r in q.rows if r["kind"] == "sketch"]
    n_rejected = len(sketch_rows)
    assert len(manifest) + n_rejected == n_candidates, "ingestion lost track of a sketch"
    rate = n_rejected / n_candidates
    if rate > max_rejection_rate:
        top = Counter(_reason_key(r["reason"]) for r in sketch_rows).most_common(5)
        examples = "; ".join(f"{k} x{n}" for k, n in top)
        raise SketchSegDataError(
            f"FS-COCO at {root}: {n_rejected} of {n_candidates} sketches rejected ({rate:.1%}), above "
            f"max_rejection_rate={max_rejection_rate:.1%}; most common reasons: {examples}"
        )

    if fscoco_seg_root is None or not Path(fscoco_seg_root).is_dir():
        logger.warning("FS-COCO-seg not found at %s: no segmentation annotations (download FS-COCO-seg val/test and "
                       "unpack them there to evaluate on it)", fscoco_seg_root)
        for c in ("annotated_split", "labels_path", "seg_vector_path", "labels_json"):
            manifest[c] = pd.Series([None] * len(manifest), index=manifest.index, dtype=object)
    elif len(manifest):
        n_by_id = dict(zip(manifest["sketch_id"].tolist(), manifest["n_strokes"].tolist()))
        _ingest_annotations(Path(fscoco_seg_root), manifest, q, n_by_id, limits["max_file_bytes"])

    quarantine = q.frame()
    kinds = Counter(r["kind"] for r in q.rows)
    logger.info(
        "ingested FS-COCO at %s in %.1fs: %d candidate sketches, %d accepted, %d rejected (%.2f%%), "
        "%d unexpected/duplicate files, %d annotation problems, %d annotated (val %d, test %d), %d inverted rasters",
        root, time.perf_counter() - t0, n_candidates, len(manifest), n_rejected, 100 * rate, kinds["file"],
        kinds["annotation"], int(manifest["annotated_split"].notna().sum()) if len(manifest) else 0,
        int((manifest["annotated_split"] == "val").sum()) if len(manifest) else 0,
        int((manifest["annotated_split"] == "test").sum()) if len(manifest) else 0,
        int(manifest["inverted"].sum()) if len(manifest) else 0,
    )
    if n_rejected:
        for k, n in Counter(_reason_key(r["reason"]) for r in sketch_rows).most_common(5):
            logger.info("  rejected: %s x%d", k, n)
    return manifest, quarantine
