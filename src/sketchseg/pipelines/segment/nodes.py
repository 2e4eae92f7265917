"""Segment a folder of user sketches with a chosen checkpoint (open vocabulary).

Every file of ``segment.input_dir`` gets one row of the table: ``ok`` (segmented), ``failed``
(unreadable image, no category list; the reason says which) or ``skipped`` (not an image file
extension). Label maps, overlays and isolation masks are PNG partitions named after the file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from PIL import Image
from sketchseg.progress import progress

from sketchseg import tracking
from sketchseg.api import (DEFAULT_ISOLATION_THRESHOLD, MAX_LABEL_MAP_CATEGORIES, clean_categories, label_map_image,
                           load_model, mask_image, overlay)
from sketchseg.errors import SketchSegConfigError, SketchSegDataError
from sketchseg.limits import file_problem
from sketchseg.model.errors import CheckpointNotFoundError
from sketchseg.pipelines.environment import run_command

logger = logging.getLogger(__name__)

DEFAULT_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
TABLE_COLUMNS = [
    "file", "status", "reason", "width", "height", "inverted", "categories", "n_categories", "ink_pixels",
    "category_pixels", "isolate_category", "isolated_pixels", "label_map", "overlay", "mask",
]


# --------------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------------
def list_input_files(input_dir: str | Path) -> list[Path]:
    """Every regular file directly in ``input_dir`` (sorted; hidden files left out)."""
    folder = Path(input_dir)
    if not folder.is_dir():
        raise SketchSegDataError(
            f"segment.input_dir: folder {folder} does not exist; put the sketches (PNG/JPG, any size) there "
            "or run with --params segment.input_dir=<folder>"
        )
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    subdirs = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if subdirs:
        logger.warning("segment.input_dir %s: sub-folders are not searched (%s)", folder, ", ".join(subdirs[:10]))
    return files


def _split_names(value: Any, source: str) -> list[str]:
    if isinstance(value, str):
        names = value.split(";")
    elif isinstance(value, (list, tuple)):
        names = list(value)
    else:
        raise SketchSegDataError(f"{source}: a category list must be a list of names or a ';'-separated string, got {value!r}")
    out = [" ".join(str(n).split()) for n in names]
    return [n for n in out if n]


def read_categories_file(path: str | Path) -> dict[str, list[str]]:
    """``{file name: [categories]}`` from JSON (``{"a.png": ["tree", "house"]}``, values may also
    be ``"tree;house"``) or CSV (columns ``filename,categories``, categories separated by ';')."""
    p = Path(path)
    if not p.is_file():
        raise SketchSegDataError(f"segment.categories_file: {p} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".json":
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SketchSegDataError(f"{p}: not valid JSON ({exc})") from exc
        if not isinstance(raw, dict):
            raise SketchSegDataError(f"{p}: expected a JSON object {{\"file name\": [\"category\", ...]}}")
        return {str(k): _split_names(v, f"{p} [{k!r}]") for k, v in raw.items()}
    if suffix == ".csv":
        try:
            table = pd.read_csv(p, dtype=str, keep_default_na=False)
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise SketchSegDataError(f"{p}: not a readable CSV ({exc})") from exc
        if not {"filename", "categories"} <= set(table.columns):
            raise SketchSegDataError(
                f"{p}: expected the columns 'filename,categories' (categories separated by ';'), got {list(table.columns)}"
            )
        return {str(r.filename).strip(): _split_names(r.categories, f"{p} [{r.filename!r}]") for r in table.itertuples()}
    raise SketchSegDataError(f"segment.categories_file {p}: use a .json or .csv file")


def category_lists(
    files: Sequence[Path], categories: Sequence[str] | None, per_file: dict[str, list[str]] | None
) -> dict[str, list[str] | None]:
    """Category list of each file: its entry in ``per_file`` (by file name, else by stem), else the
    shared ``categories``; None when neither gives one."""
    shared = _split_names(list(categories), "segment.categories") if categories else []
    per_file = per_file or {}
    by_stem: dict[str, list[str]] = {}
    for key, names in per_file.items():
        by_stem.setdefault(Path(key).stem, names)
    names_in_folder = {f.name for f in files} | {f.stem for f in files}
    unknown = sorted(k for k in per_file if k not in names_in_folder and Path(k).stem not in names_in_folder)
    if unknown:
        logger.warning("segment.categories_file names %d files that are not in the input folder: %s",
                       len(unknown), ", ".join(unknown[:10]))
    out: dict[str, list[str] | None] = {}
    for f in files:
        names = per_file.get(f.name, by_stem.get(f.stem))
        out[f.name] = names if names else (shared or None)
    return out


def partition_names(files: Sequence[Path]) -> dict[str, str]:
    """Output name of each file, unique even on a case-insensitive disk: its stem, or
    ``<stem>_<ext>`` where two files share a stem (case ignored), then ``_2``, ``_3``, ... in file
    name order wherever a name is still taken ("a.png" and "a.PNG"; "b.png", "b.jpg" and "b_png.png")."""
    stems: dict[str, int] = {}
    for f in files:
        stems[f.stem.casefold()] = stems.get(f.stem.casefold(), 0) + 1
    wanted = {f.name: (f.stem if stems[f.stem.casefold()] == 1 else f"{f.stem}_{f.suffix.lstrip('.').lower()}")
              for f in files}
    counts: dict[str, int] = {}
    for name in wanted.values():
        counts[name.casefold()] = counts.get(name.casefold(), 0) + 1
    taken = {name.casefold() for name in wanted.values() if counts[name.casefold()] == 1}
    out: dict[str, str] = {}
    for file_name in sorted(wanted):
        name = wanted[file_name]
        if counts[name.casefold()] > 1:  # shared: the first holder keeps it, the others get a free number
            base, k = name, 1
            while name.casefold() in taken:
                k += 1
                name = f"{base}_{k}"
            taken.add(name.casefold())
        out[file_name] = name
    return out


def _out_of_memory(exc: BaseException) -> bool:
    """torch's allocation failures: ``torch.OutOfMemoryError`` on CUDA, a plain ``RuntimeError``
    ("DefaultCPUAllocator: can't allocate memory") on the CPU."""
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(exc).lower()
    return "can't allocate memory" in text or "out of memory" in text


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


#: what the catalog writes under segment.output_dir (catalog_segment.yml): a file and three folders
OUTPUT_FILES = ("segmentation.csv",)
OUTPUT_FOLDERS = ("label_maps", "overlays", "masks")


def check_output_dir(output_dir: Path) -> None:
    """Make sure the outputs can be written before any inference: ``output_dir`` is (or can be
    made) a writable folder, ``segmentation.csv`` is no folder, the partition folders are no files.
    Raises ``SketchSegConfigError`` with one line naming the path and the problem."""
    hint = "; set segment.output_dir to a folder (--params segment.output_dir=<folder>)"
    for parent in [output_dir, *output_dir.parents]:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                what = "segment.output_dir" if parent == output_dir else f"segment.output_dir {output_dir}: its parent"
                raise SketchSegConfigError(f"{what} {parent} is a file, not a folder: the outputs cannot be written"
                                           + hint)
            break
    for name in OUTPUT_FILES:
        if (output_dir / name).is_dir():
            raise SketchSegConfigError(f"segment.output_dir: {output_dir / name} is a folder; the table is written "
                                       "there: remove or rename it" + hint)
    for name in OUTPUT_FOLDERS:
        sub = output_dir / name
        if sub.exists() and not sub.is_dir():
            raise SketchSegConfigError(f"segment.output_dir: {sub} is a file; the {name} are written into a folder "
                                       "of that name: remove or rename it" + hint)
    try:  # the real test: create the folder and a file in it (permissions, read-only disks, quotas)
        output_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=output_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise SketchSegConfigError(f"segment.output_dir {output_dir} is not writable: {exc.strerror or exc}"
                                   + hint) from exc


def _number(segment: dict[str, Any], key: str, default: float) -> float:
    value = segment.get(key, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SketchSegConfigError(f"segment.{key} must be a number, got {value!r}") from None


# --------------------------------------------------------------------------------------------------
# node
# --------------------------------------------------------------------------------------------------
def segment_sketches(
    segment: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Image.Image], dict[str, Image.Image], dict[str, Image.Image]]:
    """Segment every sketch of ``segment.input_dir``; returns (table, label maps, overlays, masks)."""
    input_dir = Path(str(segment.get("input_dir") or ""))
    output_dir = Path(str(segment.get("output_dir") or "data/07_model_output/segmentation"))
    if str(input_dir) in ("", "."):
        raise SketchSegConfigError("segment.input_dir is not set: the folder of sketches to segment")
    if _inside(input_dir, output_dir):
        raise SketchSegConfigError(
            f"segment.input_dir {input_dir} lies inside segment.output_dir {output_dir}, whose sub-folders are "
            "replaced on every run; keep the sketches elsewhere"
        )
    extensions = tuple(str(e).lower() if str(e).startswith(".") else f".{str(e).lower()}"
                       for e in (segment.get("extensions") or DEFAULT_EXTENSIONS))
    isolate = segment.get("isolate_category") or None
    threshold = _number(segment, "isolation_threshold", DEFAULT_ISOLATION_THRESHOLD)
    shared = segment.get("categories") or []
    if isinstance(shared, str):
        shared = _split_names(shared, "segment.categories")
    cat_file = segment.get("categories_file")
    if not shared and not cat_file:
        raise SketchSegConfigError(
            "no category list: set segment.categories (one list for every sketch, e.g. [tree, house, dog]) "
            "or segment.categories_file (JSON {file: [..]} or CSV filename,categories)"
        )

    check_output_dir(output_dir)  # before the model is loaded: finished work is never lost to a bad folder
    files = list_input_files(input_dir)
    images = [f for f in files if f.suffix.lower() in extensions]
    if not images:
        raise SketchSegDataError(
            f"segment.input_dir {input_dir} holds no sketch image ({', '.join(extensions)}); found {len(files)} other files"
        )
    per_file = None
    if cat_file:
        path = Path(str(cat_file))
        if not path.is_file() and (input_dir / path).is_file():
            path = input_dir / path
        per_file = read_categories_file(path)
    lists = category_lists(images, shared, per_file)
    names = partition_names(images)

    # conf: the variant's data/06_models/${experiment.output_folder}/best.safetensors (conf/base: ours)
    checkpoint = Path(str(segment.get("checkpoint") or "data/06_models/ours/best.safetensors"))
    try:
        segmenter = load_model(
            str(checkpoint),
            dict(segment.get("model_overrides") or {}) or None,
            device=str(segment.get("device", "auto")),
            paper_threshold=_number(segment, "paper_threshold", 0.5),
        )
    except CheckpointNotFoundError as exc:
        raise SketchSegDataError(
            f"no trained checkpoint yet: segment.checkpoint {checkpoint} does not exist; run "
            f"`{run_command('train')}` first (or set segment.checkpoint to a checkpoint file)"
        ) from exc
    rows: list[dict[str, Any]] = [  # a FIFO, a device, a symlink loop: never opened, one row each
        {"file": p.name, "status": "skipped", "reason": f"{p.name} {file_problem(p) or 'is not a regular file'}"}
        for p in sorted(input_dir.iterdir()) if not p.name.startswith(".") and not p.is_file() and not p.is_dir()]
    label_maps: dict[str, Image.Image] = {}
    overlays: dict[str, Image.Image] = {}
    masks: dict[str, Image.Image] = {}
    for f in files:
        if f.suffix.lower() not in extensions:
            rows.append({"file": f.name, "status": "skipped", "reason": f"not an image extension ({f.suffix or 'none'})"})
    for f in progress(images, desc="segment", unit="sketch"):
        row: dict[str, Any] = {"file": f.name, "isolate_category": isolate}
        cats = lists[f.name]
        if cats is None:
            row.update(status="failed", reason=f"no category list: {f.name} is not in {cat_file} and segment.categories is empty")
            logger.error("%s: %s", f, row["reason"])
            rows.append(row)
            continue
        n_cats = len(clean_categories(cats)) if cats else 0
        if n_cats > MAX_LABEL_MAP_CATEGORIES:  # checked before inference: the label map could not be written
            row.update(status="failed", categories=";".join(cats), n_categories=n_cats,
                       reason=f"{n_cats} categories: a label-map PNG holds at most {MAX_LABEL_MAP_CATEGORIES}; "
                              "segment this sketch with fewer categories")
            logger.error("%s: %s", f, row["reason"])
            rows.append(row)
            continue
        try:
            result = segmenter.segment(f, cats, isolate=isolate, threshold=threshold)
        except (SketchSegDataError, MemoryError, RuntimeError) as exc:
            if isinstance(exc, RuntimeError) and not _out_of_memory(exc):
                raise
            if isinstance(exc, torch.OutOfMemoryError) and torch.cuda.is_available():
                torch.cuda.empty_cache()  # give the next file the memory back
            reason = str(exc) if isinstance(exc, SketchSegDataError) else (
                f"{f}: out of memory ({type(exc).__name__}: {exc}); segment a smaller image or fewer categories")
            row.update(status="failed", reason=reason, categories=";".join(cats), n_categories=len(cats))
            logger.error("%s", reason)
            rows.append(row)
            continue
        key = names[f.name]
        label_maps[key] = label_map_image(result)
        overlays[key] = overlay(result)
        row.update(
            status="ok", reason="", width=result.image_size[0], height=result.image_size[1], inverted=result.inverted,
            categories=";".join(result.categories), n_categories=len(result.categories),
            ink_pixels=int(result.ink.sum()), category_pixels=json.dumps(result.pixel_counts()),
            label_map=f"label_maps/{key}.png", overlay=f"overlays/{key}.png",
        )
        if result.isolated is not None:
            masks[key] = mask_image(result)
            row.update(isolated_pixels=int(result.isolated.sum()), mask=f"masks/{key}.png")
        rows.append(row)

    table = pd.DataFrame(rows, columns=TABLE_COLUMNS).astype(
        {"width": "Int64", "height": "Int64", "n_categories": "Int64", "ink_pixels": "Int64",
         "isolated_pixels": "Int64", "inverted": "boolean"}
    )
    table = table.sort_values("file", kind="mergesort").reset_index(drop=True)
    counts = table["status"].value_counts().to_dict()
    n_ok, n_failed = int(counts.get("ok", 0)), int(counts.get("failed", 0))
    tracking.log_metrics({"segment_n_ok": n_ok, "segment_n_failed": n_failed, "segment_n_skipped": counts.get("skipped", 0)})
    if n_failed:
        logger.error("%d of %d sketches failed (see the 'reason' column of the segmentation table): %s",
                     n_failed, len(images), ", ".join(table.loc[table["status"] == "failed", "file"].tolist()[:10]))
    logger.info("segmented %d of %d sketches from %s into %s", n_ok, len(images), input_dir, output_dir)
    return table, label_maps, overlays, masks
