"""Coloured segmentations, error maps and the Fig. S9-like grid of test sketches.

Label maps are (H, W) integer class indices with -1 on the paper. Colours are RGB uint8 tuples;
the palette is saturated (readable on white) and deterministic: category ``k`` of a list gets
``palette_color(k)``.
"""

from __future__ import annotations

import colorsys
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn (sketchseg.api needs no pyplot)
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

RGB = tuple[int, int, int]
PAPER_RGB: RGB = (255, 255, 255)
INK_RGB: RGB = (0, 0, 0)
ERROR_RGB: RGB = (222, 29, 29)
CORRECT_RGB: RGB = (205, 205, 205)

# tab10 without its red, grey and olive (errors are red, correct pixels grey), then Dark2 and
# other colours that are not near-duplicates: 20 saturated colours that read on white paper.
# Pure reds are left out: red marks the errors.
_BASE_PALETTE: tuple[RGB, ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (148, 103, 189), (23, 190, 207),
    (140, 86, 75), (227, 119, 194), (230, 171, 2), (27, 158, 119), (117, 112, 179),
    (102, 166, 30), (166, 118, 29), (0, 90, 50), (80, 40, 140), (255, 200, 0),
    (0, 70, 140), (120, 200, 120), (90, 90, 30), (250, 160, 200), (0, 150, 150),
)


def palette_color(index: int) -> RGB:
    """The ``index``-th category colour: 20 fixed colours, then golden-ratio hues."""
    if index < 0:
        raise ValueError(f"colour index must be >= 0, got {index}")
    if index < len(_BASE_PALETTE):
        return _BASE_PALETTE[index]
    hue = (0.11 + 0.618033988749895 * index) % 1.0
    if hue < 0.04 or hue > 0.95:  # keep clear of the error red
        hue = (hue + 0.1) % 1.0
    sat = 0.75 if index % 2 else 0.9
    val = 0.75 if (index // 2) % 2 else 0.6
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return (int(round(255 * r)), int(round(255 * g)), int(round(255 * b)))


def category_colors(names: Sequence[str]) -> dict[str, RGB]:
    """Colour of each distinct name, in first-appearance order."""
    out: dict[str, RGB] = {}
    for name in names:
        if name not in out:
            out[name] = palette_color(len(out))
    return out


def _check_map(label_map: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(label_map)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) label map, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integer labels, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def colorize_labels(
    label_map: np.ndarray,
    colors: Sequence[RGB],
    *,
    ink: np.ndarray | None = None,
    background: RGB = PAPER_RGB,
) -> np.ndarray:
    """RGB uint8 (H, W, 3): label ``k`` painted with ``colors[k]``, -1 left as ``background``.

    ``ink`` (H, W) in [0, 1] (1 = full ink) blends each labelled pixel between the background
    and its colour, so anti-aliased strokes keep their soft edges.
    """
    labels = _check_map(label_map, "label_map")
    lut = np.array([*colors, background], dtype=np.float64).reshape(-1, 3)  # index -1 -> background
    if labels.size and labels.max() >= len(colors):
        raise ValueError(f"label_map holds label {int(labels.max())} but only {len(colors)} colours were given")
    if labels.size and labels.min() < -1:
        raise ValueError(f"label_map holds label {int(labels.min())}; only -1 (paper) is allowed below 0")
    rgb = lut[labels]
    if ink is not None:
        a = np.clip(np.asarray(ink, dtype=np.float64), 0.0, 1.0)
        if a.shape != labels.shape:
            raise ValueError(f"ink has shape {a.shape}, label_map {labels.shape}")
        a = np.where(labels >= 0, a, 0.0)[..., None]
        rgb = (1.0 - a) * np.asarray(background, dtype=np.float64) + a * rgb
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def error_map(
    pred: np.ndarray,
    gt: np.ndarray,
    *,
    error: RGB = ERROR_RGB,
    correct: RGB = CORRECT_RGB,
    background: RGB = PAPER_RGB,
) -> np.ndarray:
    """RGB uint8 (H, W, 3): stroke pixels (``gt >= 0``) labelled wrong in ``error`` (red), right
    in ``correct`` (light grey); the paper stays ``background``."""
    p = _check_map(pred, "pred")
    g = _check_map(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred has shape {p.shape}, gt {g.shape}")
    out = np.empty((*g.shape, 3), dtype=np.uint8)
    out[:] = background
    stroke = g >= 0
    out[stroke & (p == g)] = correct
    out[stroke & (p != g)] = error
    return out


def thicken(label_map: np.ndarray, radius: int) -> np.ndarray:
    """Grow labelled pixels into the paper by ``radius`` pixels (display only: thin strokes stay
    visible once a 512 px render is shrunk into a figure). Existing labels are never changed."""
    labels = _check_map(label_map, "label_map")
    if radius <= 0:
        return labels.copy()
    from scipy.ndimage import grey_dilation

    grown = grey_dilation(labels + 1, size=(2 * radius + 1, 2 * radius + 1)) - 1
    return np.where(labels >= 0, labels, grown)


@dataclass
class OverlaySample:
    """One segmented annotated sketch: label indices refer to ``categories``; ``pixel_acc`` is
    ``100 * engine.metrics.pixel_accuracy(pred, gt)``."""

    sketch_id: int
    categories: list[str]
    gt: np.ndarray           # (H, W) int, -1 paper
    pred: np.ndarray         # (H, W) int, prediction (read on stroke pixels)
    pixel_acc: float         # Acc@P in percent

    def __post_init__(self) -> None:
        self.gt = _check_map(self.gt, f"sketch {self.sketch_id} gt")
        self.pred = _check_map(self.pred, f"sketch {self.sketch_id} pred")
        if self.gt.shape != self.pred.shape:
            raise ValueError(f"sketch {self.sketch_id}: gt {self.gt.shape} and pred {self.pred.shape} differ")


def _no_data(fig: Figure, message: str) -> Figure:
    ax = fig.add_subplot(1, 1, 1)
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, color="#555555", wrap=True)
    ax.set_axis_off()
    return fig


def overlay_grid(
    samples: Sequence[OverlaySample],
    *,
    title: str | None = None,
    colors: Mapping[str, RGB] | None = None,
    display_radius: int = 1,
    panel_inches: float = 2.6,
) -> Figure:
    """Fig. S9-like grid: one row per sketch - sketch, ground truth, prediction (Acc@P in its
    title), error map (wrong stroke pixels in red) and a legend with the category names.

    Colours are fixed per category name over the whole grid (``colors`` or the palette in order of
    first appearance). ``display_radius`` thickens strokes for display only.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    n = len(samples)
    if n == 0:
        return _no_data(Figure(figsize=(6, 2)), "no annotated test sketch to show")
    names = [c for s in samples for c in s.categories]
    cmap = dict(colors) if colors is not None else category_colors(sorted(set(names)))
    missing = sorted(set(names) - set(cmap))
    if missing:
        start = len(cmap)
        cmap.update({name: palette_color(start + i) for i, name in enumerate(missing)})

    widths = [1.0, 1.0, 1.0, 1.0, 0.7]
    wspace, row_title, top_title = 0.05, 0.32, (0.5 if title else 0.05)
    fig_w = panel_inches * (sum(widths) + wspace * (len(widths) - 1)) + 0.1
    fig_h = n * (panel_inches + row_title) + top_title
    fig = Figure(figsize=(fig_w, fig_h))
    axes = fig.subplots(
        n, 5,
        gridspec_kw={"width_ratios": widths, "wspace": wspace, "hspace": row_title / panel_inches}, squeeze=False,
    )
    for row, s in enumerate(samples):
        rgb_of = [cmap[c] for c in s.categories]
        stroke = s.gt >= 0
        sketch_map = np.where(stroke, 0, -1)
        panels = [
            (colorize_labels(thicken(sketch_map, display_radius), [INK_RGB]), f"sketch {s.sketch_id}"),
            (colorize_labels(thicken(s.gt, display_radius), rgb_of), "ground truth"),
            (colorize_labels(thicken(np.where(stroke, s.pred, -1), display_radius), rgb_of),
             f"prediction  Acc@P {s.pixel_acc:.1f}%"),
            (_thick_error_map(s.pred, s.gt, display_radius), "errors (red)"),
        ]
        for col, (img, label) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(img, interpolation="antialiased")
            ax.set_title(label, fontsize=9, pad=3)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("#bbbbbb")
        lax = axes[row, 4]
        lax.set_axis_off()
        present_gt = set(np.unique(s.gt[stroke]).tolist())
        present_pred = set(np.unique(s.pred[stroke]).tolist())
        handles = []
        for k, name in enumerate(s.categories):
            mark = "" if k in present_gt else " (pred. only)" if k in present_pred else " (absent)"
            handles.append(Patch(facecolor=np.asarray(cmap[name]) / 255.0, edgecolor="none", label=f"{name}{mark}"))
        lax.legend(handles=handles, loc="center left", frameon=False, fontsize=8.5, handlelength=1.2,
                   borderaxespad=0.0, title="categories", title_fontsize=8.5, alignment="left")
    fig.subplots_adjust(left=0.05 / fig_w, right=1.0 - 0.05 / fig_w, bottom=0.02 / fig_h,
                        top=1.0 - (top_title + row_title) / fig_h)
    if title:
        fig.suptitle(title, fontsize=11, y=1.0 - 0.12 / fig_h, va="top")
    return fig


def _thick_error_map(pred: np.ndarray, gt: np.ndarray, radius: int) -> np.ndarray:
    """Error map drawn on thickened strokes (0 = correct, 1 = wrong, grown like the label maps)."""
    g = _check_map(gt, "gt")
    p = _check_map(pred, "pred")
    state = np.where(g >= 0, (p != g).astype(np.int64), -1)
    return colorize_labels(thicken(state, radius), [CORRECT_RGB, ERROR_RGB])
