"""Vector sketches (FS-COCO ``(N, 3)`` x, y, flag arrays), their rendering, and raster loading."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sketchseg.errors import SketchSegDataError
from sketchseg.limits import MAX_IMAGE_PIXELS, check_pixels, file_problem

logger = logging.getLogger(__name__)

__all__ = [
    "parse_strokes",
    "far_outside_frame",
    "FRAME_MARGIN",
    "load_vector_sketch",
    "load_vector_array",
    "stroke_pixels",
    "render_strokes",
    "render_labelled_strokes",
    "load_sketch_image",
    "image_info",
    "open_grey",
    "to_grey",
    "border_median",
    "CANVAS",
    "RENDER_SIZE",
    "THICKNESS",
]

CANVAS = 256.0  # FS-COCO's stroke frame: vector sketch coordinates lie in [0, CANVAS)
#: how far outside the frame a point may lie before its sketch is quarantined as absurd: FS-COCO has
#: points moderately outside [0, 256) (legitimate; the evaluation protocol drops their pixels), but
#: one more than a whole frame away (x or y < -256 or > 512) is a broken file, not a drawing
FRAME_MARGIN = 256.0
# The evaluation protocol renders annotated sketches at RENDER_SIZE px (conf: evaluation.render_size;
# data.protocol_render); render_strokes' square dilation is THICKNESS x THICKNESS.
RENDER_SIZE = 512
THICKNESS = 3

_BIG = np.iinfo(np.int32).max


# --------------------------------------------------------------------------------------------------
# vector sketches
# --------------------------------------------------------------------------------------------------
def parse_strokes(arr: np.ndarray, *, source: str = "<array>", canvas: float = CANVAS,
                  open_tail: bool = True, clamp: bool = True) -> list[np.ndarray]:
    """Split an FS-COCO ``(N, 3)`` array (x, y, flag) into strokes.

    Flag 1 marks the last point of a stroke; a trailing run without a closing 1 is the last stroke
    (``open_tail=False`` leaves such a run out: FS-COCO-seg labels some sketches without it).
    Int and float arrays are accepted; coordinates are clamped to ``[0, canvas)`` unless ``clamp``
    is false (the evaluation protocol's rendering, ``data.protocol_render``, takes them as drawn and
    drops what falls outside the frame).

    Returns
    -------
    list of ``(n_i, 2)`` float32 arrays (float64 when not clamped), in drawing order.

    Raises
    ------
    SketchSegDataError
        naming ``source`` for a wrong shape, a non-numeric dtype, non-finite values or an empty array.
    """
    a = np.asarray(arr)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise SketchSegDataError(f"{source}: vector sketch has non-numeric dtype {a.dtype}")
    if a.ndim != 2 or a.shape[1] != 3:
        raise SketchSegDataError(f"{source}: vector sketch must have shape (N, 3), got {a.shape}")
    if a.shape[0] == 0:
        raise SketchSegDataError(f"{source}: vector sketch is empty (0 points)")
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        bad = int(np.argwhere(~np.isfinite(a))[0, 0])
        raise SketchSegDataError(f"{source}: vector sketch has non-finite values (first at row {bad})")
    hi = np.nextafter(np.float32(canvas), np.float32(0.0))
    # unclamped (the protocol's rendering) keeps float64: it scales and rounds in float64
    xy = np.clip(a[:, :2], 0.0, float(hi)).astype(np.float32) if clamp else a[:, :2].copy()
    ends = np.flatnonzero(a[:, 2] >= 0.5) + 1  # exclusive end index of every closed stroke
    bounds = ends.tolist()
    if open_tail and (not bounds or bounds[-1] != len(a)):
        bounds.append(len(a))
    strokes: list[np.ndarray] = []
    start = 0
    for end in bounds:
        if end > start:
            strokes.append(np.ascontiguousarray(xy[start:end]))
        start = end
    return strokes


def far_outside_frame(arr: np.ndarray, *, canvas: float = CANVAS, margin: float = FRAME_MARGIN) -> str | None:
    """Why an ``(N, 3)`` vector sketch's points are absurd (more than ``margin`` outside
    ``[0, canvas]`` on any side), or None when they are not."""
    xy = np.asarray(arr, dtype=np.float64)[:, :2]
    bad = (xy < -margin) | (xy > canvas + margin)
    if not bad.any():
        return None
    row, col = (int(v) for v in np.argwhere(bad)[0])
    return (f"points far outside the {canvas:g} frame ({int(bad.any(axis=1).sum())} points, first at row {row}: "
            f"{'xy'[col]} = {xy[row, col]:.6g}; the limit is {margin:g} units beyond the frame)")


def load_vector_sketch(path: str | Path, *, canvas: float = CANVAS, open_tail: bool = True) -> list[np.ndarray]:
    """Load a ``.npy`` vector sketch (``allow_pickle=False``) and split it into strokes
    (``open_tail``: see ``parse_strokes``)."""
    return parse_strokes(load_vector_array(path), source=str(path), canvas=canvas, open_tail=open_tail)


def load_vector_array(path: str | Path) -> np.ndarray:
    """The raw ``(N, 3)`` array of a ``.npy`` vector sketch (``allow_pickle=False``), unparsed;
    ``parse_strokes(array, source=str(path))`` splits it (read once, parse twice where needed)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise SketchSegDataError(f"{path}: vector sketch file not found") from exc
    except Exception as exc:  # ValueError (object arrays, bad header), OSError, EOFError, ...
        raise SketchSegDataError(f"{path}: cannot read vector sketch: {exc}") from exc
    if not isinstance(arr, np.ndarray):
        raise SketchSegDataError(f"{path}: not a single .npy array")
    return arr


# --------------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------------
def _rasterise_lines(strokes: Sequence[np.ndarray], size: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of the 1-px polylines of every stroke: (flat pixel index, stroke index) arrays."""
    pts = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes]
    lens = np.array([len(p) for p in pts], dtype=np.int64)
    if lens.sum() == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    q = np.clip(np.floor(np.concatenate(pts) * scale), 0, size - 1).astype(np.int64)
    pt_stroke = np.repeat(np.arange(len(pts)), lens)
    is_last = np.zeros(len(q), dtype=bool)
    is_last[np.cumsum(lens)[lens > 0] - 1] = True
    single = lens[pt_stroke] == 1
    start = np.flatnonzero(~is_last | single)  # one segment per consecutive pair; a lone point -> (p, p)
    end = start + (~is_last[start])
    a, d = q[start], q[end] - q[start]
    sid = pt_stroke[start]
    n = np.abs(d).max(axis=1)  # DDA steps per segment; n + 1 pixels
    counts = n + 1
    seg_of = np.repeat(np.arange(len(a)), counts)
    offsets = np.cumsum(counts) - counts
    step = np.arange(len(seg_of)) - offsets[seg_of]
    t = step / np.maximum(n[seg_of], 1)
    xy = a[seg_of] + np.floor(t[:, None] * d[seg_of] + 0.5).astype(np.int64)
    flat = xy[:, 1] * size + xy[:, 0]
    return flat, sid[seg_of]


def _min_filter(a: np.ndarray, k: int, fill: int) -> np.ndarray:
    """Minimum over a k x k neighbourhood (separable; shifted views; outside = ``fill``)."""
    if k <= 1:
        return a
    lo, hi = k // 2, (k - 1) // 2
    h, w = a.shape
    pad = np.full((h + lo + hi, w + lo + hi), fill, dtype=a.dtype)
    pad[lo : lo + h, lo : lo + w] = a
    rows = pad[:, 0:w].copy()
    for dx in range(1, k):
        np.minimum(rows, pad[:, dx : dx + w], out=rows)
    out = rows[0:h].copy()
    for dy in range(1, k):
        np.minimum(out, rows[dy : dy + h], out=out)
    return out


def _check_render_args(size: int, thickness: int) -> tuple[int, int]:
    size, k = int(size), int(thickness)
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if k < 1:
        raise ValueError(f"thickness must be >= 1, got {thickness}")
    return size, k


def _rank_order(n_strokes: int, order: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """(rank of every stroke, stroke of every rank) for a priority ``order`` (default: index order)."""
    if order is None:
        rank_of = np.arange(n_strokes, dtype=np.int64)
        return rank_of, rank_of
    by_rank = np.asarray(list(order), dtype=np.int64)
    if len(by_rank) != n_strokes or not np.array_equal(np.sort(by_rank), np.arange(n_strokes)):
        raise ValueError(f"order must be a permutation of range({n_strokes}), got {list(order)[:20]}")
    rank_of = np.empty(n_strokes, dtype=np.int64)
    rank_of[by_rank] = np.arange(n_strokes)
    return rank_of, by_rank


def _render_lines(flat: np.ndarray, sid: np.ndarray, size: int, k: int, rank_of: np.ndarray,
                  by_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``render_strokes`` from the rasterised lines (``_rasterise_lines``)."""
    rank = np.full(size * size, _BIG, dtype=np.int32)
    if len(flat):
        # the smallest rank (the stroke that comes first in ``order``) wins where lines cross
        np.minimum.at(rank, flat, rank_of[sid].astype(np.int32))
    rank = rank.reshape(size, size)
    if len(flat):  # dilate only the bounding box of the ink (plus the kernel reach)
        ys, xs = flat // size, flat % size
        y0, y1 = max(int(ys.min()) - k, 0), min(int(ys.max()) + k + 1, size)
        x0, x1 = max(int(xs.min()) - k, 0), min(int(xs.max()) + k + 1, size)
        rank[y0:y1, x0:x1] = _min_filter(rank[y0:y1, x0:x1], k, _BIG)
    fg = rank != _BIG
    stroke_map = np.full((size, size), -1, dtype=np.int32)
    stroke_map[fg] = by_rank[rank[fg]].astype(np.int32)
    ink = np.where(fg, np.uint8(0), np.uint8(255)).astype(np.uint8)
    return ink, stroke_map


def _line_pixels(flat: np.ndarray, sid: np.ndarray, size: int, k: int) -> np.ndarray:
    """``stroke_pixels`` from the rasterised lines (``_rasterise_lines``)."""
    if not len(flat):
        return np.empty((2, 0), dtype=np.int64)
    ys, xs = flat // size, flat % size
    lo, hi = k // 2, (k - 1) // 2  # _min_filter's window: a line pixel reaches rows y - hi .. y + lo
    keys = []
    for dy in range(-hi, lo + 1):
        for dx in range(-hi, lo + 1):
            y, x = ys + dy, xs + dx
            ok = (y >= 0) & (y < size) & (x >= 0) & (x < size)
            keys.append(sid[ok] * (size * size) + y[ok] * size + x[ok])
    keys = np.unique(np.concatenate(keys))
    return np.stack([keys // (size * size), keys % (size * size)])


def render_strokes(
    strokes: Sequence[np.ndarray],
    size: int = RENDER_SIZE,
    *,
    canvas: float = CANVAS,
    thickness: int = THICKNESS,
    order: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render strokes as 1-px polylines (floored coordinates), then a ``thickness`` x ``thickness``
    square dilation: the look of FS-COCO's raster sketches, used for the generated sample's rasters
    and the tiny model's pre-training images. Evaluation renders as the protocol does instead
    (``data.protocol_render.render_protocol``: rounded, Bresenham, cross dilation).

    Parameters
    ----------
    strokes : list of ``(n_i, 2)`` arrays in the ``canvas`` frame (scaled by ``size / canvas``).
    size : output side in pixels.
    thickness : dilation kernel size (1 = no dilation).
    order : priority of the strokes where they overlap (first wins); default: stroke index order.
        Must be a permutation of ``range(len(strokes))``.

    Returns
    -------
    ink : uint8 ``(size, size)``, 255 = white paper, 0 = ink.
    stroke_map : int32 ``(size, size)``, -1 = background, else the index of the stroke owning the pixel.
    """
    size, k = _check_render_args(size, thickness)
    rank_of, by_rank = _rank_order(len(strokes), order)
    flat, sid = _rasterise_lines(strokes, size, size / float(canvas))
    return _render_lines(flat, sid, size, k, rank_of, by_rank)


def stroke_pixels(
    strokes: Sequence[np.ndarray],
    size: int = RENDER_SIZE,
    *,
    canvas: float = CANVAS,
    thickness: int = THICKNESS,
) -> np.ndarray:
    """Every stroke's own pixels as ``render_strokes`` draws it alone (overlaps not resolved).

    Returns an int64 ``(2, P)`` array: row 0 the stroke index, row 1 the flat pixel index
    (``y * size + x``), sorted and unique. The union of the pixels is ``render_strokes``'s ink;
    a stroke hidden under others in ``stroke_map`` still has all its pixels here (stroke accuracy
    votes over them).
    """
    size, k = _check_render_args(size, thickness)
    flat, sid = _rasterise_lines(strokes, size, size / float(canvas))
    return _line_pixels(flat, sid, size, k)


def render_labelled_strokes(
    strokes: Sequence[np.ndarray],
    size: int = RENDER_SIZE,
    *,
    canvas: float = CANVAS,
    thickness: int = THICKNESS,
    order: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``render_strokes`` and ``stroke_pixels`` of the same strokes, rasterising the lines once:
    ``(ink, stroke_map, own_pixels)`` (what an annotated sketch needs for scoring)."""
    size, k = _check_render_args(size, thickness)
    rank_of, by_rank = _rank_order(len(strokes), order)
    flat, sid = _rasterise_lines(strokes, size, size / float(canvas))
    ink, stroke_map = _render_lines(flat, sid, size, k, rank_of, by_rank)
    return ink, stroke_map, _line_pixels(flat, sid, size, k)


# --------------------------------------------------------------------------------------------------
# raster sketches
# --------------------------------------------------------------------------------------------------
def open_grey(path: str | Path, *, exif_orientation: bool = False, max_pixels: int | None = None,
              max_bytes: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode an image fully and return a float32 grey array in [0, 1] (alpha composited on white);
    ``exif_orientation``: turn it as its EXIF orientation tag says (user photos of sketches).

    Before anything is decoded, the file must be a readable regular file (no FIFO, directory or
    symlink loop) of at most ``max_bytes``, and its header must say at most ``max_pixels`` pixels
    (default ``sketchseg.limits.MAX_IMAGE_PIXELS``); else ``SketchSegDataError`` names the file."""
    path = Path(path)
    limit = MAX_IMAGE_PIXELS if max_pixels is None else int(max_pixels)
    why = file_problem(path, max_bytes)
    if why:
        raise SketchSegDataError(f"{path}: image file {why}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below, with a clear message
            im_ctx = Image.open(path)
        with im_ctx as im:
            check_pixels(im.width, im.height, str(path), limit)  # from the header, before decoding
            im.load()  # forces a full decode: truncated files raise here
            if exif_orientation:
                im = ImageOps.exif_transpose(im)
            info = {"width": int(im.width), "height": int(im.height), "mode": str(im.mode)}
            grey = to_grey(im)
    except FileNotFoundError as exc:
        raise SketchSegDataError(f"{path}: image file not found") from exc
    except UnidentifiedImageError as exc:
        raise SketchSegDataError(f"{path}: unreadable image: not a recognised image format") from exc
    except SketchSegDataError:
        raise
    except Image.DecompressionBombError as exc:
        raise SketchSegDataError(f"{path}: too many pixels, above the limit of {limit} pixels ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise SketchSegDataError(f"{path}: unreadable image: {exc}") from exc
    if grey.size == 0:
        raise SketchSegDataError(f"{path}: unreadable image: empty ({info['width']}x{info['height']})")
    return grey, info


def to_grey(im: Image.Image) -> np.ndarray:
    """A decoded image as a float32 grey array in [0, 1] (1 = white; alpha composited on white;
    16-bit and float modes scaled to [0, 1])."""
    mode = im.mode
    if mode.startswith("I;16"):
        return np.asarray(im, dtype=np.float32) / 65535.0
    if mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float32)
        top = float(a.max()) if a.size else 0.0
        div = 1.0 if (mode == "F" and top <= 1.0) else (255.0 if top <= 255.0 else 65535.0)
        return np.clip(a / div, 0.0, 1.0)
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
    if has_alpha:
        rgba = im.convert("RGBA")
        a = np.asarray(rgba, dtype=np.float32) / 255.0
        lum = np.asarray(rgba.convert("RGB").convert("L"), dtype=np.float32) / 255.0
        alpha = a[..., 3]
        return lum * alpha + (1.0 - alpha)
    if mode != "L":
        im = im.convert("L")
    return np.asarray(im, dtype=np.float32) / 255.0


def border_median(grey: np.ndarray) -> float:
    """Median grey value of the outermost pixel rows and columns (< 0.5: light ink on dark paper)."""
    b = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    return float(np.median(b))


def image_info(path: str | Path, *, max_pixels: int | None = None, max_bytes: int | None = None) -> dict[str, Any]:
    """Decode an image once (catching truncation) and describe it.

    Returns ``{"width", "height", "mode", "inverted"}``; ``inverted`` is True for light ink on a dark
    background (median of the border pixels < 0.5). Raises SketchSegDataError for unreadable files
    and for files over ``max_bytes`` / ``max_pixels`` (see :func:`open_grey`).
    """
    grey, info = open_grey(path, max_pixels=max_pixels, max_bytes=max_bytes)
    info["inverted"] = bool(border_median(grey) < 0.5)
    return info


def load_sketch_image(path: str | Path, size: int) -> np.ndarray:
    """Load a raster sketch as float32 ``(size, size)`` in [0, 1] (1 = white paper, 0 = ink).

    Handles JPEG/PNG in modes L, RGB, RGBA / LA / P with transparency (composited on white) and
    I;16. Inverted sketches (light ink on dark paper) are inverted back with a warning. Non-square
    images are padded with white to a centred square, then resized with antialiasing (Lanczos).
    """
    grey, info = open_grey(path)
    if border_median(grey) < 0.5:
        logger.warning("%s looks inverted (light ink on a dark background); inverting it", path)
        grey = 1.0 - grey
    h, w = grey.shape
    if h != w:
        side = max(h, w)
        sq = np.ones((side, side), dtype=np.float32)
        y0, x0 = (side - h) // 2, (side - w) // 2
        sq[y0 : y0 + h, x0 : x0 + w] = grey
        grey = sq
    if grey.shape[0] != size:
        grey = np.asarray(
            Image.fromarray(np.ascontiguousarray(grey, dtype=np.float32)).resize(
                (int(size), int(size)), Image.Resampling.LANCZOS
            ),
            dtype=np.float32,
        )
    return np.clip(grey, 0.0, 1.0).astype(np.float32, copy=False)
