"""Writer of the synthetic sample in the exact FS-COCO + FS-COCO-seg layout (:func:`generate_sample`)."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from sketchseg.data.sample.drawings import _BY_NAME, _HI, _u
from sketchseg.data.sample.scenes import make_scene
from sketchseg.data.splits import make_protocol_splits
from sketchseg.data.strokes import CANVAS, RENDER_SIZE, THICKNESS, render_strokes
from sketchseg.errors import SketchSegDataError
from sketchseg.progress import Progress
from sketchseg.workers import worker_pool

logger = logging.getLogger(__name__)

__all__ = ["generate_sample", "SAMPLE_MARKER"]

_MAX_COCO_ID = 581_929  # largest MS-COCO train2017 image id
SAMPLE_MARKER = ".sketchseg-sample"  # written into both roots: a generated tree, safe to write again


def _vector_array(strokes: list[np.ndarray]) -> np.ndarray:
    parts = []
    for s in strokes:
        a = np.zeros((len(s), 3), dtype=np.float32)
        a[:, :2] = np.round(s, 2)
        a[-1, 2] = 1.0
        parts.append(a)
    out = np.concatenate(parts)
    out[:, :2] = np.clip(out[:, :2], 0.0, _HI)
    return out


def _raw_json(rng: np.random.Generator, strokes: list[np.ndarray]) -> str:
    """raw_data: points normalised to [0, 1] of a 768x512 (3:2) canvas, pen states, timestamps (ms)."""
    W, H = 768.0, 512.0
    t = float(rng.integers(1_600_000_000_000, 1_650_000_000_000))
    rec = []
    for s in strokes:
        dt = rng.uniform(8, 25, len(s))
        lost_end = rng.random() < 0.03  # the pointer sometimes leaves the canvas: no pen-up event
        for j, (x, y) in enumerate(s):
            t += float(dt[j])
            last = j == len(s) - 1 and not lost_end
            rec.append({"coordinates": [round((128.0 + 2.0 * float(x)) / W, 5), round(2.0 * float(y) / H, 5)],
                        "pen_state": [1, 0, 0] if last else [0, 1, 0], "timestamp": int(t)})
        t += float(rng.uniform(150, 900))
    return json.dumps(rec, separators=(",", ":"))


def _photo(rng: np.random.Generator, objects: list[tuple[str, tuple[float, float, float, float]]]) -> Image.Image:
    """A small 96x64 coloured stand-in photo: sky, ground and a blob where every object is."""
    W, H = 96, 64
    im = Image.new("RGB", (W, H), (135, 185, 235))
    dr = ImageDraw.Draw(im)
    horizon = int(H * _u(rng, 0.45, 0.6))
    dr.rectangle([0, horizon, W, H], fill=(110, 160, 80))
    for name, (x0, y0, x1, y1) in objects:
        col = np.clip(np.array(_BY_NAME[name].colour) + rng.normal(0, 12, 3), 0, 255).astype(int)
        box = [x0 / CANVAS * W, y0 / CANVAS * H, max(x1 / CANVAS * W, x0 / CANVAS * W + 1),
               max(y1 / CANVAS * H, y0 / CANVAS * H + 1)]
        dr.ellipse(box, fill=tuple(int(v) for v in col))
    return im


def _save_gray_jpeg(ink: np.ndarray, path: Path) -> None:
    Image.fromarray(ink).save(path, format="JPEG", quality=92)


def _write_participant(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Write every file of one participant (FS-COCO and, for val/test sketches, FS-COCO-seg)."""
    root, seg_root = Path(job["root"]), Path(job["seg_root"])
    pid = int(job["pid"])
    out = []
    for k, (stem, split) in enumerate(zip(job["stems"], job["splits"])):
        rng = np.random.default_rng([int(job["seed"]), pid, k])
        scene = make_scene(rng)
        vec = _vector_array(scene.strokes)
        np.save(root / "vector_sketches" / str(pid) / f"{stem}.npy", vec)
        ink, _ = render_strokes(scene.strokes, job["raster_size"], canvas=CANVAS, thickness=THICKNESS)
        _save_gray_jpeg(ink, root / "raster_sketches" / str(pid) / f"{stem}.jpg")
        (root / "text" / str(pid) / f"{stem}.txt").write_bytes(scene.caption.encode("utf-8"))
        (root / "raw_data" / str(pid) / f"{stem}.json").write_text(_raw_json(rng, scene.strokes), encoding="utf-8")
        if job["write_photos"]:
            _photo(rng, scene.objects).save(root / "images" / str(pid) / f"{stem}.jpg", format="JPEG", quality=85)
        if split in ("val", "test"):
            sd = seg_root / split
            np.save(sd / "vector_sketches" / f"{stem}.npy", vec)
            (sd / "classes" / f"{stem}.json").write_text(json.dumps(scene.labels), encoding="utf-8")
            (sd / "captions" / f"{stem}.txt").write_bytes(scene.caption.encode("utf-8"))
            ink_eval, _ = render_strokes(scene.strokes, RENDER_SIZE, canvas=CANVAS, thickness=THICKNESS)
            _save_gray_jpeg(ink_eval, sd / "images" / f"{stem}.jpg")
        out.append({"pid": pid, "stem": stem, "split": split, "n_strokes": len(scene.strokes),
                    "labels": sorted(set(scene.labels))})
    return out


def generate_sample(
    fscoco_root: str | Path,
    fscoco_seg_root: str | Path,
    *,
    n_participants: int = 20,
    sketches_per_participant: int = 20,
    seed: int = 0,
    test_participants: Sequence[int] = (1, 2),
    val_per_participant: int = 2,
    raster_size: int = 256,
    write_photos: bool = True,
    progress: bool = True,
    workers: int | None = None,
) -> dict[str, Any]:
    """Write a deterministic synthetic FS-COCO tree and its FS-COCO-seg val/test annotations.

    Participants are folders ``1..n_participants``; stems are unique fake 12-digit zero-padded COCO
    ids. The same ``seed`` gives byte-identical npy/txt/json files. ``workers`` processes (default:
    up to the CPU count for large samples) write participants in parallel.

    Returns
    -------
    dict of summary counts (participants, sketches, train/val/test, strokes, classes).
    """
    t0 = time.perf_counter()
    n_participants, per = int(n_participants), int(sketches_per_participant)
    if n_participants < 1 or per < 1:
        raise SketchSegDataError(f"generate_sample needs >= 1 participant and sketch, got {n_participants}x{per}")
    root, seg_root = Path(fscoco_root), Path(fscoco_seg_root)
    pids = list(range(1, n_participants + 1))
    total = n_participants * per
    if total > _MAX_COCO_ID:
        raise SketchSegDataError(f"cannot draw {total} unique COCO-like ids")
    ids = np.random.default_rng([int(seed), 0x5EED]).choice(np.arange(1, _MAX_COCO_ID + 1), size=total, replace=False)
    ids = ids.reshape(n_participants, per)
    manifest = pd.DataFrame({"sketch_id": ids.reshape(-1).astype(np.int64),
                             "participant_id": np.repeat(np.array(pids, dtype=np.int64), per)})
    split_df = make_protocol_splits(manifest, test_participants=list(test_participants),
                                    val_per_participant=int(val_per_participant), seed=int(seed))
    split_of = dict(zip(split_df["sketch_id"].tolist(), split_df["split"].tolist()))

    for d in (root, seg_root):
        if d.is_dir() and any(d.iterdir()):
            if not (d / SAMPLE_MARKER).is_file():
                raise SketchSegDataError(
                    f"{d} is not empty and was not written by the sample generator (no {SAMPLE_MARKER} file): "
                    "refusing to write generated sketches beside what may be the real FS-COCO. Generate the "
                    "sample into its own folder (`kedro run --pipelines=make_sample --env=sample` writes "
                    "data/01_raw/sample), or empty the folder first"
                )
            logger.warning("writing the sample into non-empty %s: files of an earlier, different sample stay", d)
    for d in (root, seg_root):
        d.mkdir(parents=True, exist_ok=True)
        (d / SAMPLE_MARKER).write_text("written by sketchseg.data.sample.generate_sample\n", encoding="utf-8")
    for sub in ("images", "raster_sketches", "vector_sketches", "text", "raw_data"):
        if sub == "images" and not write_photos:
            continue
        for pid in pids:
            (root / sub / str(pid)).mkdir(parents=True, exist_ok=True)
    for split in ("val", "test"):
        for sub in ("images", "captions", "vector_sketches", "classes"):
            (seg_root / split / sub).mkdir(parents=True, exist_ok=True)

    jobs = [{"root": str(root), "seg_root": str(seg_root), "pid": pid, "seed": int(seed),
             "stems": [f"{int(i):012d}" for i in ids[j]], "splits": [split_of[int(i)] for i in ids[j]],
             "raster_size": int(raster_size), "write_photos": bool(write_photos)} for j, pid in enumerate(pids)]
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if total >= 400 else 1
    workers = max(1, min(int(workers), len(jobs)))
    results: list[dict[str, Any]] = []
    bar = Progress(total=total, desc="sample sketches", unit="sketch", enabled=progress)
    try:
        if workers == 1:
            for job in jobs:
                res = _write_participant(job)
                results += res
                bar.update(len(res))
        else:
            with worker_pool(workers) as pool:  # a stop signal never lands in a fork; workers end with the block
                for res in pool.imap_unordered(_write_participant, jobs):
                    results += res
                    bar.update(len(res))
    finally:
        bar.close()

    seg_labels = sorted({lab for r in results if r["split"] in ("val", "test") for lab in r["labels"]})
    for split in ("val", "test"):  # as in the FS-COCO-seg release: one class list in each annotated set
        (seg_root / split / "all_classes.json").write_text(json.dumps(["blank_pixel", *seg_labels]), encoding="utf-8")
    # the dataset's own retrieval split files (one id per line), for layout fidelity
    val_ids = sorted(f"{int(s):012d}" for s, sp in split_of.items() if sp == "val")
    test_ids = sorted(f"{int(s):012d}" for s, sp in split_of.items() if sp == "test")
    (root / "val_normal.txt").write_text("\n".join(val_ids), encoding="utf-8")
    (root / "val_unseen_user.txt").write_text("\n".join(test_ids), encoding="utf-8")

    counts = pd.Series([r["split"] for r in results]).value_counts()
    used = sorted({lab for r in results for lab in r["labels"]})
    summary = {
        "fscoco_root": str(root),
        "fscoco_seg_root": str(seg_root),
        "participants": n_participants,
        "sketches": len(results),
        "train": int(counts.get("train", 0)),
        "val": int(counts.get("val", 0)),
        "test": int(counts.get("test", 0)),
        "strokes": int(sum(r["n_strokes"] for r in results)),
        "categories": len(used),
        "seg_classes": len(seg_labels) + 1,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    logger.info("generated sample FS-COCO: %s", summary)
    return summary
