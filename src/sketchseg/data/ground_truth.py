"""Ground truth of an annotated sketch: the class of every pixel from its strokes' labels.

Two rules where strokes of different classes overlap (``evaluation.overlap_rule``):
:func:`gt_label_map` gives a pixel the class of the stroke that covers it in a stroke-index map
(``data.strokes.render_labelled_strokes``: the first stroke in draw order wins), and
:func:`gt_label_map_by_count` the class with the most covering strokes, as the authors'
evaluation code does. Pure numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sketchseg.errors import SketchSegDataError


def as_int_map(a: np.ndarray, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 2:
        raise SketchSegDataError(f"{name} must be a 2-D (H, W) label map, got shape {arr.shape}")
    if shape is not None and arr.shape != shape:
        raise SketchSegDataError(f"{name} has shape {arr.shape}, expected {shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise SketchSegDataError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def gt_label_map(stroke_map: np.ndarray, stroke_labels: np.ndarray) -> np.ndarray:
    """Ground-truth class map from a stroke-index map: label of the covering stroke, -1 background.

    ``stroke_labels[s] < 0`` (unlabelled stroke) also gives -1.
    """
    smap = as_int_map(stroke_map, "stroke_map")
    labels = np.asarray(stroke_labels, dtype=np.int64).reshape(-1)
    if smap.size and (smap.max(initial=-1) >= len(labels) or smap.min(initial=-1) < -1):
        raise SketchSegDataError(
            f"stroke_map holds stroke indices in [{smap.min()}, {smap.max()}] but there are "
            f"{len(labels)} stroke labels"
        )
    lut = np.append(labels, -1)  # index -1 -> background
    out = lut[smap]
    out[out < 0] = -1
    return out


def stroke_pixel_pairs(stroke_pixels: np.ndarray, n_strokes: int, shape: tuple[int, ...]) -> np.ndarray:
    """``stroke_pixels`` as an int64 ``(2, P)`` array, checked against ``n_strokes`` and a map of ``shape``."""
    pairs = np.asarray(stroke_pixels, dtype=np.int64).reshape(2, -1)
    if pairs.size and (pairs[0].min() < 0 or pairs[0].max() >= n_strokes
                       or pairs[1].min() < 0 or pairs[1].max() >= int(np.prod(shape))):
        raise SketchSegDataError(f"stroke_pixels out of range for {n_strokes} strokes and a {tuple(shape)} map")
    return pairs


def gt_label_map_by_count(
    stroke_pixels: np.ndarray,
    stroke_labels: np.ndarray,
    shape: tuple[int, int],
    tie_order: Sequence[int],
) -> np.ndarray:
    """Ground-truth class map where each pixel takes the class with the MOST strokes covering it
    (every stroke drawn alone, ``data.strokes.stroke_pixels``), as the authors' evaluation code
    builds it; ties go to the class that comes first in ``tie_order`` (a permutation of the class
    indices; their code: alphabetical). -1 = background; unlabelled strokes (label < 0) count for
    no class, and a pixel only they cover is background.
    """
    h, w = (int(x) for x in shape)
    labels = np.asarray(stroke_labels, dtype=np.int64).reshape(-1)
    tie = np.asarray(list(tie_order), dtype=np.int64)
    n = len(tie)
    if not np.array_equal(np.sort(tie), np.arange(n)):
        raise SketchSegDataError(f"tie_order must be a permutation of range({n}), got {tie.tolist()[:20]}")
    if labels.size and labels.max() >= n:
        raise SketchSegDataError(f"stroke_labels must be < {n} classes, got max {labels.max()}")
    pairs = stroke_pixel_pairs(stroke_pixels, len(labels), (h, w))
    out = np.full(h * w, -1, dtype=np.int64)
    cls = labels[pairs[0]] if pairs.size else np.zeros(0, dtype=np.int64)
    keep = cls >= 0
    if keep.any():
        rank = np.empty(n, dtype=np.int64)
        rank[tie] = np.arange(n)
        pix, inv = np.unique(pairs[1][keep], return_inverse=True)
        counts = np.zeros((n, len(pix)), dtype=np.int32)
        np.add.at(counts, (rank[cls[keep]], inv), 1)
        out[pix] = tie[counts.argmax(axis=0)]  # first maximum = earliest in tie_order
    return out.reshape(h, w)
