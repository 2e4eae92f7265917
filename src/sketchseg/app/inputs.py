"""What the page hands the app, checked: category lists, captions, drawings and uploaded files.

Every check raises ``AppInputError`` with one line the page shows as it is; nothing here needs a
browser or gradio.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from sketchseg.data.sample.drawings import CATEGORIES as SAMPLE_CATEGORIES
from sketchseg.errors import SketchSegDataError
from sketchseg.limits import MAX_CAPTION_CHARS, MAX_IMAGE_PIXELS, file_problem
from sketchseg.text.nltk_setup import ensure_nltk_data
from sketchseg.text.nouns import DEFAULT_COMPOUNDS, DEFAULT_STOP_WORDS, extract_categories

logger = logging.getLogger(__name__)

__all__ = [
    "AppInputError", "MAX_CAPTION_CHARS", "MAX_CATEGORIES", "MAX_CATEGORY_CHARS", "MAX_UPLOAD_BYTES", "MAX_UPLOAD_PIXELS", "WORK_SIDE",
    "SAMPLE_CATEGORIES", "parse_categories", "categories_from_caption", "choose_categories", "drawing_to_image",
    "read_upload", "fit_work_size", "has_ink", "check_caption", "canvas_too_large", "REFUSED",
]

#: more categories than this is refused (each is a text prompt: 300 would take minutes on a CPU)
MAX_CATEGORIES = 40
#: a category name longer than this is refused (CLIP reads 77 tokens; a paragraph is no category)
MAX_CATEGORY_CHARS = 60
#: an upload larger than this (bytes) is refused before it is decoded (the server caps it too)
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: an upload or a drawing with more pixels than this is refused before it is decoded (decompression
#: bombs): the project-wide ``sketchseg.limits.MAX_IMAGE_PIXELS``
MAX_UPLOAD_PIXELS = MAX_IMAGE_PIXELS
#: key of a drawing value that the page's canvas refused before decoding (its message)
REFUSED = "refused"
#: sketches larger than this (longest side, px) are downscaled before segmenting: the model sees
#: them at its input size anyway, and C full-size maps of a photo-sized scan would fill the memory
WORK_SIDE = 1024
#: grey level (0 = black, 1 = white) at or below which a pixel is ink (api.DEFAULT_PAPER_THRESHOLD)
INK_LEVEL = 0.5

_SPLIT = re.compile(r"[,;\n]+")


class AppInputError(ValueError):
    """Input the page cannot segment; the message is shown on the page as it is."""


def parse_categories(text: str | None) -> list[str]:
    """Category names typed by the user: separated by commas, semicolons or new lines, spaces
    collapsed, empty entries dropped, duplicates (ignoring case) kept once, in typed order.

    >>> parse_categories(" tree, house ;sun\\n\\n Tree ,  traffic   light")
    ['tree', 'house', 'sun', 'traffic light']
    """
    out: list[str] = []
    seen: set[str] = set()
    for part in _SPLIT.split(text or ""):
        name = " ".join(part.split())
        if name and name.lower() not in seen:
            seen.add(name.lower())
            out.append(name)
    return out


def check_categories(names: Sequence[str]) -> list[str]:
    """``names`` if there are 1..MAX_CATEGORIES of them, each at most MAX_CATEGORY_CHARS long."""
    if not names:
        raise AppInputError("No categories: type some (e.g. tree, house, sun) or a caption to extract them from.")
    if len(names) > MAX_CATEGORIES:
        raise AppInputError(f"{len(names)} categories given; at most {MAX_CATEGORIES} at a time.")
    long = [n for n in names if len(n) > MAX_CATEGORY_CHARS]
    if long:
        raise AppInputError(
            f"category name longer than {MAX_CATEGORY_CHARS} characters: {long[0][:MAX_CATEGORY_CHARS]}...")
    return list(names)


def whole_message(exc: BaseException, limit: int = 800) -> str:
    """An error's message on one line, every line of it (a loader's reason often comes after the
    first line: a bad TorchScript file's), cut at ``limit`` characters."""
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def categories_from_caption(caption: str | None, *, nltk_data_path: str | os.PathLike[str] | None = None) -> list[str]:
    """The categories a caption names, extracted as in training (``sketchseg.text.nouns`` with its
    default stop words and compounds = conf/base/parameters_prompts.yml). NLTK data is looked up
    on ``nltk_data_path``, ``$NLTK_DATA`` and the project's data/00_nltk; never downloaded here."""
    if not caption or not caption.strip():
        return []
    check_caption(caption)
    try:
        ensure_nltk_data(nltk_data_path, allow_download=False)
    except SketchSegDataError as exc:
        raise AppInputError(f"Cannot read the caption: {whole_message(exc)}") from exc
    return extract_categories(caption, stop_words=DEFAULT_STOP_WORDS, compounds=DEFAULT_COMPOUNDS)


def choose_categories(typed: str | None, caption: str | None, **caption_kw: Any) -> tuple[list[str], str]:
    """The categories to segment with and where they came from: the typed ones when any, else
    those of the caption. Raises ``AppInputError`` when there are none, too many or too long ones."""
    check_caption(caption)
    names = parse_categories(typed)
    if names:
        return check_categories(names), "typed"
    if caption and caption.strip():
        names = categories_from_caption(caption, **caption_kw)
        if not names:
            raise AppInputError(
                f"No object found in the caption {caption.strip()[:80]!r}: type the categories instead.")
        return check_categories(names), "caption"
    return check_categories([]), "typed"


def drawing_to_image(value: Any) -> Image.Image | None:
    """The picture of a Sketchpad / ImageEditor value (``{"composite": array, ...}`` or an array
    or PIL image), composited on white; None when there is no drawing at all."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        if value.get(REFUSED):
            raise AppInputError(str(value[REFUSED]))
        composite = value.get("composite")
        if composite is None:
            layers = [x for x in [value.get("background"), *(value.get("layers") or [])] if x is not None]
            if not layers:
                return None
            composite = _flatten(layers)
        value = composite
    if isinstance(value, (str, Path)):
        return read_upload(value)
    if isinstance(value, np.ndarray):
        arr = value
        if arr.ndim >= 2:
            _check_drawing_pixels(arr.shape[1], arr.shape[0])
        if arr.dtype != np.uint8:
            arr = np.clip(arr * (255.0 if arr.max(initial=0) <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
            raise AppInputError(f"The drawing has an unexpected shape {arr.shape}.")
        value = Image.fromarray(arr)
    if not isinstance(value, Image.Image):
        raise AppInputError(f"The drawing arrived as {type(value).__name__}, not as an image.")
    _check_drawing_pixels(*value.size)
    return _on_white(value)


def _too_many_pixels(what: str, width: int, height: int, limit: int = MAX_UPLOAD_PIXELS) -> str | None:
    if int(width) * int(height) <= limit:
        return None
    return f"{what}: {int(width)}x{int(height)} pixels is too large (at most {limit / 1e6:.0f} megapixels)."


def _check_drawing_pixels(width: int, height: int) -> None:
    why = _too_many_pixels("The drawing", width, height)
    if why:
        raise AppInputError(why)


def canvas_too_large(files: Sequence[Any], limit: int = MAX_UPLOAD_PIXELS) -> str | None:
    """The page's message when one of the canvas images (file paths or bytes, as the browser sent
    them) has more than ``limit`` pixels, read from its header only; None when all are fine (or
    not images at all: the decoder says so later)."""
    import io

    for f in files:
        if f is None:
            continue
        src = io.BytesIO(bytes(f)) if isinstance(f, (bytes, bytearray, memoryview)) else f
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(src) as im:  # lazy: reads the header, decodes nothing
                    why = _too_many_pixels("The drawing", *im.size, limit=limit)
        except Image.DecompressionBombError:
            return f"The drawing has too many pixels (at most {limit / 1e6:.0f} megapixels)."
        except (OSError, ValueError, SyntaxError, EOFError):
            continue
        if why:
            return why
    return None


def check_caption(caption: str | None) -> None:
    """``AppInputError`` for a caption over ``MAX_CAPTION_CHARS`` characters."""
    if caption and len(caption) > MAX_CAPTION_CHARS:
        raise AppInputError(f"The caption has {len(caption)} characters; at most {MAX_CAPTION_CHARS} "
                            "(a sentence or two naming the objects).")


def _flatten(layers: Sequence[Any]) -> Image.Image:
    for layer in layers:
        w, h = layer.size if isinstance(layer, Image.Image) else np.shape(layer)[1::-1]
        _check_drawing_pixels(w, h)
    base = _on_white(Image.fromarray(np.asarray(layers[0], dtype=np.uint8)) if not isinstance(layers[0], Image.Image)
                     else layers[0]).convert("RGBA")
    for layer in layers[1:]:
        im = layer if isinstance(layer, Image.Image) else Image.fromarray(np.asarray(layer, dtype=np.uint8))
        base.alpha_composite(im.convert("RGBA").resize(base.size))
    return base.convert("RGB")


def _on_white(im: Image.Image) -> Image.Image:
    """RGB picture; transparent pixels become white paper."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        white.alpha_composite(rgba)
        return white.convert("RGB")
    return im.convert("RGB") if im.mode not in ("RGB", "L") else im


def read_upload(path: str | os.PathLike[str] | None, *, max_bytes: int = MAX_UPLOAD_BYTES,
                max_pixels: int = MAX_UPLOAD_PIXELS) -> Image.Image | None:
    """An uploaded sketch file, checked and fully decoded (EXIF orientation applied, transparency on
    white); None without a file. Too many bytes, too many pixels, a non-image or a broken image
    raise ``AppInputError`` naming the file."""
    if path is None or str(path) == "":
        return None
    p = Path(path)
    name = p.name
    why = file_problem(p)  # never open a FIFO, a device or a directory
    if why and why != "not found":
        raise AppInputError(f"{name}: the upload {why}.")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise AppInputError(f"{name}: cannot read the uploaded file ({exc.strerror or exc}).") from exc
    if size > max_bytes:
        raise AppInputError(f"{name}: {size / 2**20:.1f} MB is too large (at most {max_bytes / 2**20:.0f} MB).")
    if size == 0:
        raise AppInputError(f"{name}: the file is empty.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked just below
            opened = Image.open(p)
        with opened as im:
            w, h = im.size
            if w * h > max_pixels:
                raise AppInputError(f"{name}: {w}x{h} pixels is too large (at most {max_pixels / 1e6:.0f} megapixels).")
            im.load()
            picture = ImageOps.exif_transpose(im)
    except AppInputError:
        raise
    except Image.DecompressionBombError as exc:
        raise AppInputError(f"{name}: too many pixels ({exc}).") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # UnidentifiedImageError is an OSError
        kind = "not an image (PNG, JPEG, WebP, ...)" if "cannot identify" in str(exc) else f"a broken image ({exc})"
        raise AppInputError(f"{name}: {kind}.") from exc
    return _on_white(picture)


def fit_work_size(image: Image.Image, side: int = WORK_SIDE) -> tuple[Image.Image, bool]:
    """``image`` downscaled (aspect kept, Lanczos) so that its longest side is at most ``side``;
    and whether it was."""
    w, h = image.size
    if max(w, h) <= side:
        return image, False
    scale = side / max(w, h)
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS), True


def has_ink(image: Image.Image, level: float = INK_LEVEL) -> bool:
    """True when some pixel is dark enough to be ink on white paper (or, for a light-on-dark
    picture, light enough: the api inverts those)."""
    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    if grey.size == 0:
        return False
    dark = grey <= level
    return bool(dark.any() and not dark.all())
