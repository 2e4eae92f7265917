"""Segment new sketches from Python: load a checkpoint, then ``segment(image, categories)``.

>>> from sketchseg.api import load_model, overlay
>>> seg = load_model("data/06_models/ours/best.safetensors")       # doctest: +SKIP
>>> result = seg.segment("my_sketch.png", ["tree", "house", "dog"])  # doctest: +SKIP
>>> result.label_map.shape == result.image_size[::-1]               # doctest: +SKIP
>>> overlay(result, "my_sketch.png").save("my_sketch_overlay.png")  # doctest: +SKIP

Images may be any size up to ``sketchseg.limits.MAX_IMAGE_PIXELS`` (40 MP; a larger one is a
SketchSegDataError naming it, checked before decoding) and any mode (a file path, a PIL image or a
numpy array; RGBA composited on white; light-on-dark sketches are inverted). The model sees the
sketch resized to its input size as ``model.input_resize`` says: by default padded with white to a
centred square and resized with Lanczos (as sketchseg trains), the similarity maps upsampled back to
the padded square and cropped; with ``authors_bicubic_rgb8`` (the converted authors' checkpoint) as
the authors' CLIP transform does (8-bit, bicubic, a non-square sketch stretched), the maps upsampled
back to the image. Every output has the image's original size. Pixels whose grey value
(0 = black ink, 1 = white paper) is above ``paper_threshold`` are paper and get label -1.
Categories are free text (open vocabulary); each becomes the prompt "A sketch of {category}.".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps

from sketchseg.data.strokes import border_median, open_grey, to_grey
from sketchseg.engine.runtime import resolve_device
from sketchseg.errors import SketchSegConfigError, SketchSegDataError
from sketchseg.limits import MAX_CAPTION_CHARS, MAX_IMAGE_PIXELS, check_caption_length, check_pixels
from sketchseg.model.checkpoint import load_model_from_checkpoint
from sketchseg.model.config import INPUT_RESIZES, ModelConfig
from sketchseg.model.model import SketchSegModel
from sketchseg.model.similarity import PAPER_ISOLATION_THRESHOLD, upsample
from sketchseg.reporting.overlays import PAPER_RGB, category_colors, colorize_labels

logger = logging.getLogger(__name__)

ImageInput = Union[str, Path, Image.Image, np.ndarray]

DEFAULT_ISOLATION_THRESHOLD = PAPER_ISOLATION_THRESHOLD  # §3.4: best on the paper's test set
DEFAULT_PAPER_THRESHOLD = 0.5
#: categories an 8-bit label-map PNG holds (0 = paper, 255 kept free)
MAX_LABEL_MAP_CATEGORIES = 254
_NOT_ISOLATED_RGB = (200, 200, 200)


@dataclass
class SegmentationResult:
    """Segmentation of one sketch at its original size.

    ``label_map`` (H, W) int64: index into ``categories`` of the most similar category for every
    ink pixel, -1 on the paper. ``similarity`` (C, H, W) float32: the model's per-category maps
    (as used for the argmax). ``isolated`` (H, W) bool: ink pixels whose min-max normalised map of
    ``isolated_category`` is above ``threshold`` (None without isolation).
    """

    label_map: np.ndarray
    categories: list[str]
    similarity: np.ndarray
    ink: np.ndarray = field(repr=False)          # (H, W) bool, True on ink pixels
    grey: np.ndarray = field(repr=False)         # (H, W) float32, 0 = ink, 1 = paper (after inversion)
    isolated: np.ndarray | None = None
    isolated_category: str | None = None
    threshold: float | None = None
    inverted: bool = False

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) as PIL reports it."""
        return int(self.label_map.shape[1]), int(self.label_map.shape[0])

    def pixel_counts(self) -> dict[str, int]:
        """Ink pixels assigned to each category."""
        counts = np.bincount(self.label_map[self.label_map >= 0].ravel(), minlength=len(self.categories))
        return {c: int(n) for c, n in zip(self.categories, counts)}

    def __repr__(self) -> str:
        """A short summary, not the arrays: size, ink, each category's share of the ink, isolation."""
        width, height = self.image_size
        counts = self.pixel_counts()
        ink = sum(counts.values())
        shares = ", ".join(f"{c} {100.0 * n / ink:.1f}%" if ink else f"{c} 0%" for c, n in counts.items())
        text = f"SegmentationResult({width}x{height} px, {ink} ink px: {shares}"
        if self.isolated is not None:
            text += f"; isolated {self.isolated_category!r} above {self.threshold}: {int(self.isolated.sum())} px"
        if self.inverted:
            text += "; inverted"
        return text + ")"

    __str__ = __repr__


def clean_categories(categories: Sequence[str]) -> list[str]:
    """The category names as segmented: whitespace-normalised, empty ones and duplicates dropped."""
    if isinstance(categories, (str, bytes)):
        raise SketchSegConfigError(f"categories must be a list of names, got the string {categories!r}")
    if categories is None or not isinstance(categories, Iterable):
        raise SketchSegConfigError(
            f"categories must be a list of category names, e.g. ['tree', 'dog'], got {categories!r}")
    out: list[str] = []
    for c in categories:
        if not isinstance(c, str):
            raise SketchSegConfigError(f"category names must be strings, got {c!r}")
        name = " ".join(c.split())
        if name and name not in out:
            out.append(name)
    if not out:
        raise SketchSegConfigError("no category given: segment(image, categories) needs at least one category name")
    return out


def image_to_grey(image: ImageInput, *, source: str | None = None) -> tuple[np.ndarray, bool]:
    """Any sketch image -> (grey (H, W) float32 in [0, 1], 1 = paper; whether it was inverted).

    Files are fully decoded (truncated or non-image files raise ``SketchSegDataError`` naming the
    file); an EXIF orientation (phone photos) is applied, so the sketch is read the way viewers
    show it; alpha is composited on white; light ink on a dark background is inverted.
    """
    if isinstance(image, (str, Path)):
        grey, _ = open_grey(image, exif_orientation=True)  # pixels checked from the header, before decoding
        name = str(image)
    elif isinstance(image, Image.Image):
        name = source or "<PIL image>"
        check_pixels(image.width, image.height, name, MAX_IMAGE_PIXELS)
        grey = to_grey(ImageOps.exif_transpose(image))
    elif isinstance(image, np.ndarray):
        grey = _array_to_grey(image, source or "<array>")
        name = source or "<array>"
    else:
        raise SketchSegDataError(f"{source or 'image'}: expected a path, a PIL image or a numpy array, got {type(image).__name__}")
    grey = np.clip(np.asarray(grey, dtype=np.float32), 0.0, 1.0)
    if grey.ndim != 2 or grey.size == 0:
        raise SketchSegDataError(f"{name}: empty or malformed image of shape {grey.shape}")
    inverted = border_median(grey) < 0.5
    if inverted:
        logger.warning("%s looks inverted (light ink on a dark background); inverting it", name)
        grey = 1.0 - grey
    return grey, bool(inverted)


def _array_to_grey(arr: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise SketchSegDataError(f"{name}: expected an (H, W), (H, W, 3) or (H, W, 4) array, got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating) or a.dtype == bool):
        kind = {"c": "complex numbers", "O": "Python objects", "U": "strings", "S": "bytes",
                "M": "dates", "m": "time deltas", "V": "structured records"}.get(a.dtype.kind, f"dtype {a.dtype}")
        raise SketchSegDataError(
            f"{name}: the array holds {kind} (dtype {a.dtype}); expected real grey or RGB values "
            "(uint8 0..255, uint16, bool, or floats 0..1 / 0..255)")
    check_pixels(a.shape[1], a.shape[0], name, MAX_IMAGE_PIXELS)  # before any float copy of it
    if np.issubdtype(a.dtype, np.integer) or a.dtype == bool:
        if a.dtype == bool:
            top = 1.0
        elif a.dtype in (np.uint8, np.uint16):  # the dtype says the range (a 16-bit scan: 0..65535)
            top = float(np.iinfo(a.dtype).max)
        else:  # plain ints (e.g. int64 from a list): 0..255 unless larger values say 16 bit
            top = 65535.0 if a.max(initial=0) > 255 else 255.0
        a = a.astype(np.float32) / top
    else:
        a = a.astype(np.float32)
        if not np.isfinite(a).all():
            raise SketchSegDataError(f"{name}: the array holds NaN or infinite values")
        if a.max(initial=0.0) > 1.0:
            a = a / 255.0
    if a.ndim == 2:
        return a
    rgb = a[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as PIL's "L"
    if a.shape[-1] == 4:
        alpha = np.clip(a[..., 3], 0.0, 1.0)
        rgb = rgb * alpha + (1.0 - alpha)
    return rgb


@dataclass(frozen=True)
class ModelInput:
    """A sketch as the model sees it, and where its maps go back to.

    ``pixels`` (S, S) float32 in [0, 1] (1 = paper); the patch-grid maps are upsampled to
    ``canvas`` (rows, cols) and the image is the (H, W) window at ``offset`` (y0, x0) of it.
    """

    pixels: np.ndarray
    canvas: tuple[int, int]
    offset: tuple[int, int]


def authors_resize(grey: np.ndarray, size: int) -> np.ndarray:
    """The authors' CLIP transform (their ``models/clip.py`` ``_transform``: ``Resize((S, S),
    BICUBIC)`` of the 8-bit RGB image, then ``ToTensor``) on a grey sketch: the grey image rounded
    to 8 bit, resized bicubic by PIL to ``size`` x ``size`` (a non-square sketch is stretched, as
    theirs is: no padding, no crop), divided by 255. PIL resamples every 8-bit band alike, so this
    equals each channel of their RGB image resized. Returns (size, size) float32 in [0, 1]."""
    rgb8 = np.rint(np.clip(np.asarray(grey, dtype=np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    img = Image.fromarray(rgb8)
    if img.size != (int(size), int(size)):
        img = img.resize((int(size), int(size)), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32) / np.float32(255.0)


def lanczos_square(grey: np.ndarray, size: int) -> tuple[np.ndarray, tuple[int, int], int]:
    """Pad with white to a centred square (side = max(H, W)) and resize to ``size`` (Lanczos on the
    float image, as the training loader). Returns (input (size, size), (y0, x0) offset, side)."""
    h, w = grey.shape
    side = max(h, w)
    y0, x0 = (side - h) // 2, (side - w) // 2
    sq = np.ones((side, side), dtype=np.float32)
    sq[y0 : y0 + h, x0 : x0 + w] = grey
    if side != size:
        sq = np.asarray(Image.fromarray(sq).resize((int(size), int(size)), Image.Resampling.LANCZOS), dtype=np.float32)
    return np.clip(sq, 0.0, 1.0), (y0, x0), side


def model_input(grey: np.ndarray, size: int, resize: str = "lanczos_float") -> ModelInput:
    """The model's ``size`` x ``size`` input for a grey sketch (H, W), as ``model.input_resize``
    says (``sketchseg.model.config.INPUT_RESIZES``): ``lanczos_float`` pads to a centred white
    square and resizes it with Lanczos (maps go back to the square, then are cropped);
    ``authors_bicubic_rgb8`` is the authors' transform (:func:`authors_resize`; maps go back to
    (H, W) directly, undoing the stretch)."""
    h, w = grey.shape
    if resize == "authors_bicubic_rgb8":
        return ModelInput(authors_resize(grey, size), (h, w), (0, 0))
    if resize == "lanczos_float":
        pixels, offset, side = lanczos_square(grey, size)
        return ModelInput(pixels, (side, side), offset)
    raise SketchSegConfigError(f"model.input_resize must be one of {list(INPUT_RESIZES)}, got {resize!r}")


class Segmenter:
    """A loaded model ready to segment sketches (see :func:`load_model`)."""

    def __init__(self, model: SketchSegModel, *, device: torch.device, paper_threshold: float = DEFAULT_PAPER_THRESHOLD,
                 metadata: Mapping[str, str] | None = None) -> None:
        if not 0.0 < float(paper_threshold) < 1.0:
            raise SketchSegConfigError(f"paper_threshold must be in (0, 1), got {paper_threshold!r}")
        self.model = model.to(device).eval()
        self.device = device
        self.paper_threshold = float(paper_threshold)
        self.metadata = dict(metadata or {})
        cfg = model.cfg
        if cfg.feature_normalization != "feature" and cfg.input_resize != "authors_bicubic_rgb8":
            logger.warning(
                "model.feature_normalization=%s (the authors' scoring) with model.input_resize=%s: their scoring "
                "is so sensitive to the input that labels differ from theirs on sketches that are not %d px; "
                "model.input_resize=authors_bicubic_rgb8 preprocesses as they do", cfg.feature_normalization,
                cfg.input_resize, cfg.image_size)

    @property
    def config(self) -> ModelConfig:
        return self.model.cfg

    @torch.no_grad()
    def segment(
        self,
        image: ImageInput,
        categories: Sequence[str],
        *,
        isolate: str | None = None,
        threshold: float = DEFAULT_ISOLATION_THRESHOLD,
        source: str | None = None,
    ) -> SegmentationResult:
        """Label every ink pixel of ``image`` with one of ``categories`` (argmax of the similarity
        maps, §3.4); with ``isolate``, also the §3.4 single-category mask (min-max normalised map of
        that category > ``threshold``, ink pixels only). ``isolate`` need not be in ``categories``.
        """
        names = clean_categories(categories)
        if isolate is not None:
            isolate = " ".join(str(isolate).split())
            if not isolate:
                raise SketchSegConfigError("isolate must be a category name or None, got an empty string")
            if not 0.0 <= float(threshold) <= 1.0:
                raise SketchSegConfigError(f"isolation threshold must be in [0, 1], got {threshold!r}")
        grey, inverted = image_to_grey(image, source=source)
        h, w = grey.shape
        inp = model_input(grey, int(self.model.cfg.image_size), self.model.cfg.input_resize)
        pixels = torch.from_numpy(inp.pixels).to(self.device).expand(1, 3, -1, -1)
        crop = (*inp.offset, h, w)
        grid_maps = self.model.segment(pixels, [names], size=None)[0].float()
        sim = np.empty((len(names), h, w), dtype=np.float32)
        for c in range(len(names)):  # one map at a time: a big sketch never holds C full-size maps at once
            sim[c] = self._upsample_crop(grid_maps[c], inp.canvas, crop)
        ink = grey <= self.paper_threshold
        label_map = np.where(ink, sim.argmax(axis=0), -1).astype(np.int64)
        isolated = None
        if isolate is not None:
            norm = self.model.segment_normalised(pixels, [[isolate]], size=None)[0][0].float()
            isolated = (self._upsample_crop(norm, inp.canvas, crop) > float(threshold)) & ink
        return SegmentationResult(
            label_map=label_map, categories=names, similarity=sim, ink=ink, grey=grey, isolated=isolated,
            isolated_category=isolate, threshold=float(threshold) if isolate is not None else None, inverted=inverted,
        )

    def _upsample_crop(self, grid_map: torch.Tensor, canvas: tuple[int, int],
                       crop: tuple[int, int, int, int]) -> np.ndarray:
        """One patch-grid map upsampled to ``canvas`` (the padded square, or the image itself;
        ``cfg.upsample_mode``), cropped to the image."""
        y0, x0, h, w = crop
        full = upsample(grid_map, canvas, self.model.cfg.upsample_mode)
        return full[y0 : y0 + h, x0 : x0 + w].cpu().numpy().astype(np.float32, copy=False)


def load_model(
    checkpoint_path: str | Path,
    model_params: Mapping[str, Any] | ModelConfig | None = None,
    *,
    config_from: str = "checkpoint",
    device: str | torch.device = "auto",
    paper_threshold: float = DEFAULT_PAPER_THRESHOLD,
) -> Segmenter:
    """Build the model a checkpoint belongs to and load it (safetensors, never unpickled), with
    ``sketchseg.model.checkpoint.load_model_from_checkpoint``.

    ``model_params``: ``None`` = the checkpoint's own ``model_config`` metadata; a mapping (or a
    ``ModelConfig``) = values that change it. ``config_from="checkpoint"`` (default): only
    inference-time settings and where the CLIP weights are may change (``model.config.OVERRIDABLE_KEYS``,
    e.g. ``{"pretrained": "/weights/ViT-B-16.safetensors"}`` offline, ``{"upsample_mode": "bilinear"}``);
    another key is refused. ``config_from="conf"``: ``model_params`` is the whole configuration, used as
    it is. The checkpoint must fit that model exactly (keys, shapes, backbone fingerprint), else
    ``sketchseg.model.errors.CheckpointMismatchError`` says what differs.
    """
    if not isinstance(checkpoint_path, (str, Path)) or not str(checkpoint_path).strip():
        raise SketchSegConfigError(
            f"load_model: checkpoint_path must be the path of a checkpoint file (.safetensors), got {checkpoint_path!r}")
    path = Path(checkpoint_path)
    model, cfg, meta = load_model_from_checkpoint(path, model_params, config_from=config_from)
    dev = device if isinstance(device, torch.device) else resolve_device(str(device))
    logger.info("loaded %s (%s, epoch %s) on %s", path, cfg.clip_model, meta.get("epoch", "?"), dev)
    return Segmenter(model, device=dev, paper_threshold=paper_threshold, metadata=meta)


# --------------------------------------------------------------------------------------------------
# pictures
# --------------------------------------------------------------------------------------------------
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def overlay(
    result: SegmentationResult, image: ImageInput | None = None, *, legend: bool = True, isolated: bool = False
) -> Image.Image:
    """RGB picture of a segmentation: every ink pixel in its category's colour (blended by ink
    darkness, so soft strokes stay soft), the paper white, and a legend strip on the right with
    the category names and their share of the ink. ``isolated=True`` (needs an isolation mask)
    keeps only the isolated strokes in colour and turns the others light grey. ``image`` defaults
    to the grey sketch kept in ``result``.
    """
    if isolated and result.isolated is None:
        raise SketchSegConfigError("overlay(..., isolated=True) needs a result of segment(..., isolate=<category>)")
    grey = result.grey if image is None else image_to_grey(image)[0]
    if grey.shape != result.label_map.shape:
        raise SketchSegDataError(f"image of shape {grey.shape} does not match the label map {result.label_map.shape}")
    colors = list(category_colors(result.categories).values())
    ink_amount = 1.0 - grey
    labels = result.label_map
    if isolated:
        labels = np.where(result.isolated, labels, np.where(labels >= 0, len(colors), -1))
        colors = [*colors, _NOT_ISOLATED_RGB]
    picture = Image.fromarray(colorize_labels(labels, colors, ink=ink_amount))
    if not legend:
        return picture
    h, w = result.label_map.shape
    font_px = int(np.clip(min(h, w) / 22, 11, 40))
    font = _font(font_px)
    counts = result.pixel_counts()
    total = max(sum(counts.values()), 1)
    cmap: dict[str | None, tuple[int, int, int]] = dict(category_colors(result.categories))
    lines = [(c, f"{c} ({100.0 * counts[c] / total:.0f}%)") for c in result.categories]
    if isolated:
        cmap[None] = _NOT_ISOLATED_RGB
        lines.append((None, f"not {result.isolated_category} (map <= {result.threshold:.2f})"))
    probe = ImageDraw.Draw(picture)
    text_w = max(int(probe.textlength(t, font=font)) for _, t in lines)
    pad = max(font_px // 2, 4)
    row_h = int(font_px * 1.4)
    strip_w = pad * 3 + font_px + text_w
    canvas = Image.new("RGB", (w + strip_w, max(h, pad * 2 + row_h * len(lines))), PAPER_RGB)
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.line([(w, 0), (w, canvas.height)], fill=(210, 210, 210), width=1)
    for i, (name, text) in enumerate(lines):
        y = pad + i * row_h
        draw.rectangle([w + pad, y, w + pad + font_px, y + font_px], fill=cmap[name])
        draw.text((w + pad * 2 + font_px, y + font_px // 2), text, fill=(20, 20, 20), font=font, anchor="lm")
    return canvas


def label_map_image(result: SegmentationResult) -> Image.Image:
    """The label map as a palette PNG: pixel value 0 = paper, k + 1 = ``categories[k]``; the
    palette shows the same colours as :func:`overlay` (read the values with ``np.asarray``)."""
    n = len(result.categories)
    if n > MAX_LABEL_MAP_CATEGORIES:
        raise SketchSegConfigError(f"a label-map PNG holds at most {MAX_LABEL_MAP_CATEGORIES} categories, got {n}")
    img = Image.fromarray((result.label_map + 1).astype(np.uint8))  # mode "L"; putpalette makes it "P"
    palette = [*PAPER_RGB]
    for rgb in category_colors(result.categories).values():
        palette.extend(rgb)
    img.putpalette(palette + [0, 0, 0] * (256 - len(palette) // 3))
    return img


def mask_image(result: SegmentationResult) -> Image.Image:
    """The isolation mask as a greyscale PNG: 255 = isolated ink pixel, 0 = everything else."""
    if result.isolated is None:
        raise SketchSegConfigError("this segmentation has no isolation mask (segment(..., isolate=<category>))")
    return Image.fromarray(np.where(result.isolated, 255, 0).astype(np.uint8))


def caption_categories(caption: str) -> list[str]:
    """The object categories a caption names, extracted as in training (``sketchseg.text.nouns``
    with its default stop words and compounds), e.g. to pass to :meth:`Segmenter.segment`.
    A caption longer than ``MAX_CAPTION_CHARS`` (2000) characters raises ``SketchSegDataError``."""
    from sketchseg.text.nouns import extract_categories

    if not isinstance(caption, str):
        raise SketchSegDataError(f"caption must be a string, got {type(caption).__name__}")
    check_caption_length(caption, "caption", MAX_CAPTION_CHARS)
    return extract_categories(caption)
