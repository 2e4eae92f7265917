"""Generated sketch-text pairs of the pre-training: single objects and scenes of the sample's
drawing routines, rendered like the sample's raster files."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from sketchseg.data.sample import CATEGORIES, MAX_COUNTS, PLURALS, draw_object, make_caption, make_scene
from sketchseg.data.strokes import CANVAS, render_strokes
from sketchseg.model.config import DEFAULT_PROMPT_TEMPLATE
from sketchseg.pretrain.config import SEED_TAG, PretrainConfig
from sketchseg.progress import Progress

__all__ = ["EVAL_PROMPT", "Pair", "PretrainPool", "build_pool", "make_pair", "single_object_text"]

EVAL_PROMPT = DEFAULT_PROMPT_TEMPLATE  # the prompt the sketch model uses for a category
_NUMBER_WORDS = {2: "two", 3: "three", 4: "four"}
_CAT_INDEX = {c: i for i, c in enumerate(CATEGORIES)}


@dataclass
class Pair:
    """One generated sketch: grey image (S, S) uint8 (255 = paper), its kind and text information."""

    image: np.ndarray
    kind: str                # "single" | "scene"
    category: str | None     # single objects
    count: int               # single objects: number of instances
    caption: str | None      # scenes: the generator's caption
    objects: tuple[str, ...] = ()  # the categories drawn (image-level tags; a single object: its category)
    patch_labels: np.ndarray | None = None  # (grid * grid,) int8 row-major: the category index (CATEGORIES)
                                            # owning most ink of each patch, -1 = no ink


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def single_object_text(rng: np.random.Generator, category: str, count: int) -> str:
    """A text for ``count`` instances of ``category``: a prompt-like template or a short caption."""
    plural = PLURALS[category]
    k = int(rng.integers(0, 6))
    if count == 1:
        options = [EVAL_PROMPT.format(category), f"A sketch of {_article(category)} {category}.",
                   f"{_article(category)} {category}", category, f"a drawing of {_article(category)} {category}"]
    else:
        many = _NUMBER_WORDS.get(count, "many")
        options = [EVAL_PROMPT.format(plural), f"{many} {plural}", plural, f"A sketch of {many} {plural}.",
                   f"a drawing of some {plural}"]
    if k == 5:
        return make_caption(rng, [(category, count)])
    return options[k]


def _render(strokes: Sequence[np.ndarray], image_size: int, render_size: int, thickness: int,
            stroke_categories: Sequence[int] | None = None, grid: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """The grey image at ``image_size``, and with ``stroke_categories`` (a category index per
    stroke) and ``grid`` > 0 the (grid * grid,) patch labels: each patch's category owning most ink."""
    ink, stroke_map = render_strokes(strokes, render_size, canvas=CANVAS, thickness=thickness)
    labels = None
    if stroke_categories is not None and grid > 0:
        labels = _patch_labels(stroke_map, np.asarray(stroke_categories, dtype=np.int64), grid)
    if render_size == image_size:
        return ink, labels
    grey = Image.fromarray(ink.astype(np.float32) / 255.0).resize((image_size, image_size), Image.Resampling.LANCZOS)
    return np.clip(np.rint(np.asarray(grey, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8), labels


def _patch_labels(stroke_map: np.ndarray, stroke_categories: np.ndarray, grid: int) -> np.ndarray:
    """(grid * grid,) int8: per patch of a ``grid`` x ``grid`` split of ``stroke_map`` (stroke index
    per pixel, -1 = paper), the category owning most of its ink pixels (ties: the lower index); -1
    where the patch has no ink."""
    size = stroke_map.shape[0]
    cat = np.where(stroke_map >= 0, stroke_categories[np.maximum(stroke_map, 0)], -1)
    edges = np.linspace(0, size, grid + 1).round().astype(int)
    out = np.full(grid * grid, -1, dtype=np.int8)
    n_cat = len(CATEGORIES)
    for i in range(grid):
        for j in range(grid):
            block = cat[edges[i]:edges[i + 1], edges[j]:edges[j + 1]]
            counts = np.bincount(block[block >= 0], minlength=n_cat)
            if counts.any():
                out[i * grid + j] = int(counts.argmax())
    return out


def _zoom(rng: np.random.Generator, strokes: list[np.ndarray], max_zoom: float) -> list[np.ndarray]:
    """Scale the strokes by a log-uniform factor in [1, max_zoom] (capped so that they fit the 256
    canvas) about their box centre, then move them to a random place where they fit."""
    z = float(np.exp(rng.uniform(0.0, np.log(max_zoom)))) if max_zoom > 1.0 else 1.0
    pts = np.concatenate(strokes)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    size = np.maximum(hi - lo, 1.0)
    margin = 6.0  # px of the 256 frame kept free at the border
    z = max(min(z, float((CANVAS - 2 * margin) / size.max())), 1.0)
    if z <= 1.0:  # natural size: keep where make_scene would draw it
        return strokes
    half = z * size / 2.0 + margin
    centre = np.array([rng.uniform(half[0], CANVAS - half[0]) if half[0] < CANVAS / 2 else CANVAS / 2,
                       rng.uniform(half[1], CANVAS - half[1]) if half[1] < CANVAS / 2 else CANVAS / 2])
    old = (lo + hi) / 2.0
    return [np.clip((s - old) * z + centre, 0.0, CANVAS - 1e-3).astype(np.float32) for s in strokes]


def _shrink(rng: np.random.Generator, strokes: list[np.ndarray], min_scale: float) -> list[np.ndarray]:
    """Scale the strokes by a log-uniform factor in [min_scale, 1] about their box centre and move
    them to a random place of the 256 canvas where their box fits."""
    f = float(np.exp(rng.uniform(np.log(min_scale), 0.0)))
    pts = np.concatenate(strokes)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    half = f * (hi - lo) / 2.0
    room = np.maximum(CANVAS - 1e-3 - 2.0 * half, 0.0)
    centre = half + rng.uniform(0.0, 1.0, 2) * room
    old = (lo + hi) / 2.0
    return [np.clip((s - old) * f + centre, 0.0, CANVAS - 1e-3).astype(np.float32) for s in strokes]


def _restyle(rng: np.random.Generator, cfg: PretrainConfig, strokes: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """The pair's size and pen: shrunk (``cfg.min_scale`` < 1) and a pen width in [thickness,
    max_thickness] (``cfg.max_thickness``); no random draw for an option that is off."""
    if cfg.min_scale < 1.0:
        strokes = _shrink(rng, strokes, float(cfg.min_scale))
    pen = int(cfg.thickness)
    if cfg.max_thickness is not None and cfg.max_thickness > pen:
        pen = int(rng.integers(pen, int(cfg.max_thickness) + 1))
    return strokes, pen


def make_pair(cfg: PretrainConfig, stream: int, index: int, *, image_size: int, kind: str | None = None,
              category: str | None = None, grid: int = 0) -> Pair:
    """Pair ``index`` of ``stream`` under ``cfg`` (seed, single_fraction, max_zoom, min_scale,
    render_size, thickness, max_thickness): deterministic in (cfg.seed, stream, index), disjoint from the sample's seed keys.

    ``kind`` (and for single objects ``category``) can be forced; otherwise they are drawn. With
    ``grid`` > 0 the pair carries its ``patch_labels`` on a ``grid`` x ``grid`` patch split.
    """
    rng = np.random.default_rng([SEED_TAG, int(cfg.seed), int(stream), int(index)])
    draw_kind = "single" if rng.random() < cfg.single_fraction else "scene"
    kind = kind or draw_kind
    if kind == "scene":
        scene = make_scene(rng)
        strokes, pen = _restyle(rng, cfg, scene.strokes)
        image, labels = _render(strokes, image_size, cfg.render_size, pen,
                                [_CAT_INDEX[c] for c in scene.labels], grid)
        return Pair(image, "scene", None, 1, scene.caption, tuple(sorted(set(scene.labels))), labels)
    if kind != "single":
        raise ValueError(f"kind must be 'single' or 'scene', got {kind!r}")
    cat = category if category is not None else CATEGORIES[int(rng.integers(len(CATEGORIES)))]
    max_n = MAX_COUNTS[cat]
    count = 1 if max_n == 1 or rng.random() < 0.6 else int(rng.integers(2, max_n + 1))
    strokes = [s for inst in draw_object(rng, cat, count) for s in inst]
    strokes = _zoom(rng, strokes, float(cfg.max_zoom))
    strokes, pen = _restyle(rng, cfg, strokes)
    image, labels = _render(strokes, image_size, cfg.render_size, pen, [_CAT_INDEX[cat]] * len(strokes), grid)
    return Pair(image, "single", cat, count, None, (cat,), labels)


@dataclass
class PretrainPool:
    """Generated pairs held in memory: images (N, S, S) uint8 and per-pair text information."""

    images: torch.Tensor
    kinds: list[str]
    categories: list[str | None]
    counts: list[int]
    captions: list[str | None]
    objects: list[tuple[str, ...]] = field(default_factory=list)
    patch_labels: torch.Tensor | None = None  # (N, grid * grid) int64 category index per patch, -1 = no ink

    def __len__(self) -> int:
        return int(self.images.shape[0])


def build_pool(cfg: PretrainConfig, stream: int, n: int, *, image_size: int, progress: bool = True,
               desc: str = "pre-training pairs", grid: int = 0) -> PretrainPool:
    """Generate pairs ``0..n-1`` of ``stream`` (with their patch labels when ``grid`` > 0)."""
    pairs = [make_pair(cfg, stream, i, image_size=image_size, grid=grid)
             for i in Progress(range(int(n)), desc=desc, unit="pair", enabled=progress)]
    return _to_pool(pairs, image_size)


def _to_pool(pairs: Sequence[Pair], image_size: int) -> PretrainPool:
    images = (torch.from_numpy(np.stack([p.image for p in pairs])) if pairs
              else torch.empty(0, image_size, image_size, dtype=torch.uint8))
    labels = None
    if pairs and all(p.patch_labels is not None for p in pairs):
        labels = torch.from_numpy(np.stack([p.patch_labels for p in pairs]).astype(np.int64))
    return PretrainPool(images, [p.kind for p in pairs], [p.category for p in pairs], [p.count for p in pairs],
                        [p.caption for p in pairs], [p.objects for p in pairs], labels)
