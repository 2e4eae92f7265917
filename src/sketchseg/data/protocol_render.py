"""Annotated sketches rendered exactly as the FS-COCO-seg evaluation protocol renders them.

The evaluation code behind the paper's numbers (the authors' ``utils.py``: ``preprocess``,
``mydrawPNG``, ``rasterize_Sketch``; see ``docs/paper-vs-code.md`` and
``tests/conformance/README.md``) draws every stroke on its own:

1. coordinates are scaled from the 256 frame to ``size`` (``x / 256 * size``) and rounded half to
   even (numpy's ``round``); nothing is clamped;
2. each stroke is a 1-px Bresenham polyline through its rounded points (a one-point stroke is one
   pixel), every segment walked from its first point;
3. line pixels with x or y ``<= 0`` or ``>= size`` are dropped (row 0 and column 0 included), so a
   stroke outside the frame, or along its first row or column, renders to no pixel;
4. the stroke's pixels are dilated once by the 3 x 3 cross (``scipy.ndimage.binary_dilation``'s
   default structure), clipped to the image.

The ink is the union of the strokes' pixels. This is what decides which pixels exist and are
scored, so evaluation (ground truth, scored pixels and the model's input image) uses it; the
pixel-for-pixel equality with the authors' functions is tested on fixtures made by their code
(``tests/conformance``). ``data.strokes.render_strokes`` (floor, clamped, 3 x 3 square) stays only
for what imitates FS-COCO's own raster sketches: the generated sample's rasters and the tiny
model's pre-training images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sketchseg.data.strokes import CANVAS, RENDER_SIZE

__all__ = ["CROSS_OFFSETS", "protocol_line_pixels", "render_protocol"]

#: the 3 x 3 cross (``scipy.ndimage.generate_binary_structure(2, 1)``) as (dy, dx) offsets
CROSS_OFFSETS = ((-1, 0), (0, -1), (0, 0), (0, 1), (1, 0))


def _bresenham(p0: np.ndarray, p1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer Bresenham pixels of many segments at once: ``((x, y) of every pixel, segment index)``.

    Along the major axis (x when ``|dx| > |dy|``, else y) the walk takes ``t = 0 .. L`` steps from
    ``p0``; the minor offset after ``t`` steps is ``floor((2 t m + L) / (2 L))`` (``m``, ``L`` the
    minor and major lengths): ``m t / L`` rounded half up, measured from ``p0`` toward ``p1``.
    """
    d = p1 - p0
    adx, ady = np.abs(d[:, 0]), np.abs(d[:, 1])
    x_major = adx > ady
    major = np.where(x_major, adx, ady)
    minor_len = np.where(x_major, ady, adx)
    sx = np.where(d[:, 0] > 0, 1, -1)
    sy = np.where(d[:, 1] > 0, 1, -1)
    counts = major + 1
    seg = np.repeat(np.arange(len(d)), counts)
    t = np.arange(len(seg)) - np.repeat(np.cumsum(counts) - counts, counts)
    big, small = major[seg], minor_len[seg]
    minor = (2 * t * small + big) // np.maximum(2 * big, 1)
    along_x = x_major[seg]
    x = p0[seg, 0] + sx[seg] * np.where(along_x, t, minor)
    y = p0[seg, 1] + sy[seg] * np.where(along_x, minor, t)
    return np.stack([x, y], axis=1), seg


def protocol_line_pixels(strokes: Sequence[np.ndarray], size: int = RENDER_SIZE, *,
                         canvas: float = CANVAS) -> tuple[np.ndarray, np.ndarray]:
    """The 1-px lines of every stroke (steps 1-3): ``(flat pixel index y * size + x, stroke index)``,
    unique pairs sorted by stroke, then pixel."""
    pts = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes]
    lens = np.array([len(p) for p in pts], dtype=np.int64)
    if lens.sum() == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    q = np.round(np.concatenate(pts) / float(canvas) * size).astype(np.int64)
    first = np.cumsum(lens) - lens  # every stroke's first point
    prev = np.arange(len(q)) - 1
    prev[first[lens > 0]] = first[lens > 0]  # a stroke starts with the one-pixel segment (p0, p0)
    xy, seg = _bresenham(q[prev], q)
    stroke = np.repeat(np.arange(len(pts)), lens)[seg]
    inside = (xy[:, 0] > 0) & (xy[:, 1] > 0) & (xy[:, 0] < size) & (xy[:, 1] < size)
    keys = np.unique(stroke[inside] * (size * size) + xy[inside, 1] * size + xy[inside, 0])
    return keys % (size * size), keys // (size * size)


def _dilate_cross(flat: np.ndarray, stroke: np.ndarray, size: int) -> np.ndarray:
    """Every stroke's line pixels dilated by the cross, each stroke alone: sorted unique ``(2, P)``
    pairs (stroke index, flat pixel index)."""
    if not len(flat):
        return np.empty((2, 0), dtype=np.int64)
    ys, xs = flat // size, flat % size
    keys = []
    for dy, dx in CROSS_OFFSETS:
        y, x = ys + dy, xs + dx
        ok = (y >= 0) & (y < size) & (x >= 0) & (x < size)
        keys.append(stroke[ok] * (size * size) + y[ok] * size + x[ok])
    merged = np.unique(np.concatenate(keys))
    return np.stack([merged // (size * size), merged % (size * size)])


def render_protocol(
    strokes: Sequence[np.ndarray],
    size: int = RENDER_SIZE,
    *,
    canvas: float = CANVAS,
    order: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render strokes as the evaluation protocol does (see the module docstring).

    Parameters
    ----------
    strokes : list of ``(n_i, 2)`` arrays in the ``canvas`` frame, NOT clamped
        (``data.strokes.parse_strokes(..., clamp=False)``).
    size : output side in pixels (the protocol: 512).
    order : which stroke owns a pixel in ``stroke_map`` where strokes overlap (the first in
        ``order`` wins; default: stroke index order). It changes neither ``ink`` nor ``own_pixels``.

    Returns
    -------
    ink : uint8 ``(size, size)``, 255 = white paper, 0 = ink.
    stroke_map : int32 ``(size, size)``, -1 = background, else the owning stroke's index.
    own_pixels : int64 ``(2, P)``: stroke index and flat pixel index of every stroke's own pixels
        (overlaps not resolved), sorted and unique; a stroke may have none.
    """
    size = int(size)
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    n = len(strokes)
    by_rank = np.arange(n, dtype=np.int64) if order is None else np.asarray(list(order), dtype=np.int64)
    if len(by_rank) != n or not np.array_equal(np.sort(by_rank), np.arange(n)):
        raise ValueError(f"order must be a permutation of range({n}), got {list(by_rank)[:20]}")
    rank_of = np.empty(n, dtype=np.int64)
    rank_of[by_rank] = np.arange(n)
    flat, stroke = protocol_line_pixels(strokes, size, canvas=canvas)
    own = _dilate_cross(flat, stroke, size)
    none = np.iinfo(np.int64).max
    rank = np.full(size * size, none, dtype=np.int64)
    if own.size:
        np.minimum.at(rank, own[1], rank_of[own[0]])
    fg = rank != none
    stroke_map = np.full(size * size, -1, dtype=np.int32)
    stroke_map[fg] = by_rank[rank[fg]]
    ink = np.where(fg, np.uint8(0), np.uint8(255)).reshape(size, size)
    return ink, stroke_map.reshape(size, size), own
