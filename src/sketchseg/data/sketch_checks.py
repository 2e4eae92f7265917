"""Checks of one FS-COCO sketch's files (run in ingestion's worker processes), the folder listing
that survives unreadable entries, and the ingestion's size caps (``data.max_file_bytes``,
``data.max_raster_pixels``). Every file is checked with ``sketchseg.limits.file_problem`` before it
is read: a symlink loop, a FIFO or device, a directory under a file's name, an unreadable file or
one over its cap is a quarantine reason, never a hang or a traceback that ends the ingestion."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sketchseg.data.quarantine import Quarantine
from sketchseg.data.strokes import far_outside_frame, image_info, parse_strokes
from sketchseg.errors import SketchSegConfigError, SketchSegDataError
from sketchseg.limits import DEFAULT_MAX_FILE_BYTES, MAX_IMAGE_PIXELS, file_problem

__all__ = ["check_batch", "check_sketch", "count_strokes", "entry_is_dir", "ingestion_limits", "list_entries",
           "read_caption"]


def _strip_source(msg: str, path: str) -> str:
    prefix = f"{path}: "
    return msg[len(prefix):] if msg.startswith(prefix) else msg


def read_caption(path: str, max_bytes: int | None = None) -> tuple[str | None, str | None]:
    """(caption, problem)."""
    why = file_problem(path, max_bytes)  # before any read: no FIFO, loop, directory or huge file
    if why:
        return None, f"caption file {why}"
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        return None, f"caption cannot be read: {exc}"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"caption is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at position {exc.start})"
    text = text.lstrip("\ufeff").strip()
    if not text:
        return None, "caption is empty"
    return text, None


def count_strokes(path: str, max_bytes: int | None = None) -> tuple[tuple[int, int] | None, str | None]:
    """((number of strokes, number without a trailing open run), problem)."""
    why = file_problem(path, max_bytes)
    if why:
        return None, f"vector sketch {why}"
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # object arrays, bad header, truncated data, not an npy at all
        return None, f"vector sketch does not parse: {exc}"
    if not isinstance(arr, np.ndarray):
        return None, "vector sketch does not parse: not a single array"
    if arr.size == 0:
        return None, "vector sketch has no strokes"
    try:
        strokes = parse_strokes(arr, source=path)
    except SketchSegDataError as exc:
        return None, f"vector sketch does not parse: {_strip_source(str(exc), path)}"
    if not strokes:
        return None, "vector sketch has no strokes"
    absurd = far_outside_frame(arr)
    if absurd:
        return None, f"vector sketch has {absurd}"
    open_tail = float(arr[-1, 2]) < 0.5  # the last point closes no stroke: a trailing open run
    return (len(strokes), len(strokes) - int(open_tail)), None


def check_sketch(task: tuple[str, str, str], limits: Mapping[str, Any] | None = None) -> dict[str, Any]:
    raster, vector, text = task
    limits = limits or {}
    cap = limits.get("max_file_bytes", DEFAULT_MAX_FILE_BYTES)
    problems: list[tuple[str, str]] = []
    caption, why = read_caption(text, cap.get("caption"))
    if why:
        problems.append((text, why))
    counts, why = count_strokes(vector, cap.get("vector"))
    if why:
        problems.append((vector, why))
    n_strokes = counts[0] if counts else None
    info: dict[str, Any] | None = None
    try:
        info = image_info(raster, max_pixels=limits.get("max_raster_pixels", MAX_IMAGE_PIXELS),
                          max_bytes=cap.get("raster"))
    except SketchSegDataError as exc:
        problems.append((raster, _strip_source(str(exc), raster)))
    return {"caption": caption, "n_strokes": n_strokes, "info": info, "problems": problems}


def check_batch(tasks: list[tuple[str, str, str]], limits: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    return [check_sketch(t, limits) for t in tasks]


def list_entries(folder: Path, q: Quarantine, pid: int | None) -> list[os.DirEntry]:
    """The entries of ``folder`` sorted by name; a folder that cannot be listed (no permission, a
    symlink loop) is one quarantine row, not the end of the ingestion."""
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        q.add(folder, None, pid, f"folder cannot be listed: {exc.strerror or exc}", "file")
        return []


def entry_is_dir(entry: os.DirEntry) -> tuple[bool, str | None]:
    """(is a directory, why it could not be told): a symlink loop or a dangling link is no directory."""
    try:
        return entry.is_dir(), None
    except OSError as exc:
        return False, f"cannot be read ({exc.strerror or exc})"


def ingestion_limits(max_file_bytes: Mapping[str, int] | None, max_raster_pixels: int | None) -> dict[str, Any]:
    """The checked size caps: ``data.max_file_bytes`` over the defaults, ``data.max_raster_pixels``."""
    caps = dict(DEFAULT_MAX_FILE_BYTES)
    unknown = sorted(set(max_file_bytes or {}) - set(caps))
    if unknown:
        raise SketchSegConfigError(
            f"data.max_file_bytes: unknown file type(s) {unknown}; the types are {sorted(caps)}")
    for k, v in (max_file_bytes or {}).items():
        if v is not None:
            caps[k] = v
    for k, v in caps.items():
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise SketchSegConfigError(f"data.max_file_bytes.{k} must be a positive number of bytes, got {v!r}")
    pixels = MAX_IMAGE_PIXELS if max_raster_pixels is None else max_raster_pixels
    if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels <= 0:
        raise SketchSegConfigError(f"data.max_raster_pixels must be a positive number of pixels, got {pixels!r}")
    return {"max_file_bytes": caps, "max_raster_pixels": int(pixels)}
