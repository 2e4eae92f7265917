"""One segmentation as the page shows it: the overlay, the isolation picture, the legend with each
category's share of the ink, and one message line. Pure functions over ``sketchseg.api``."""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from typing import Sequence

from PIL import Image

from sketchseg.api import DEFAULT_ISOLATION_THRESHOLD, Segmenter, SegmentationResult, overlay
from sketchseg.app.inputs import SAMPLE_CATEGORIES, AppInputError, fit_work_size, has_ink, whole_message
from sketchseg.errors import SketchSegError
from sketchseg.model.errors import ModelError
from sketchseg.reporting.overlays import category_colors

logger = logging.getLogger(__name__)

#: dropdown entry meaning "isolate nothing"
NO_ISOLATION = "(none)"
#: the sample model's backbone (open_clip config registered by sketchseg)
SAMPLE_BACKBONE = "sketchseg-tiny"


@dataclass(frozen=True)
class Share:
    """One legend row: a category, its colour and its ink."""

    category: str
    color: str      # "#rrggbb", as in the overlay
    pixels: int
    percent: float  # of all ink pixels


@dataclass
class Outcome:
    """What the page shows after pressing Segment (``ok`` False: only ``message`` is meaningful)."""

    ok: bool
    message: str
    overlay: Image.Image | None = None
    isolated: Image.Image | None = None
    shares: list[Share] = field(default_factory=list)
    isolated_pixels: int | None = None
    isolated_name: str | None = None
    threshold: float | None = None

    @property
    def legend_html(self) -> str:
        return legend_html(self.shares, self.isolated_pixels, self.isolated_name, self.threshold)


def failure(message: str) -> Outcome:
    return Outcome(ok=False, message=f"**Problem:** {message}")



def hex_color(rgb: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb[:3]))


def shares(result: SegmentationResult) -> list[Share]:
    """Legend rows in category order: colour as in ``api.overlay``, ink pixels and percent of the ink."""
    counts = result.pixel_counts()
    total = sum(counts.values())
    colors = category_colors(result.categories)
    return [Share(c, hex_color(colors[c]), counts[c], 100.0 * counts[c] / total if total else 0.0)
            for c in result.categories]


def legend_html(rows: Sequence[Share], isolated_pixels: int | None = None, isolated_name: str | None = None,
                threshold: float | None = None) -> str:
    """The legend as an HTML table (swatch, category, share of the ink, pixels); names escaped."""
    if not rows:
        return "<div class='sketchseg-legend'></div>"
    body = "".join(
        f"<tr data-category='{html.escape(r.category, quote=True)}'>"
        f"<td><span style='display:inline-block;width:1em;height:1em;background:{r.color};"
        f"border:1px solid #888'></span></td><td>{html.escape(r.category)}</td>"
        f"<td style='text-align:right'>{r.percent:.1f}%</td><td style='text-align:right'>{r.pixels}</td></tr>"
        for r in rows
    )
    total = sum(r.pixels for r in rows)
    foot = ""
    if isolated_name is not None and isolated_pixels is not None:
        pct = 100.0 * isolated_pixels / total if total else 0.0
        foot = (f"<p>Isolated <b>{html.escape(isolated_name)}</b> (normalised map &gt; {threshold:.2f}): "
                f"{isolated_pixels} ink pixels, {pct:.1f}% of the ink.</p>")
    return ("<div class='sketchseg-legend'><table><thead><tr><th></th><th>category</th><th>share of the ink</th>"
            f"<th>pixels</th></tr></thead><tbody>{body}</tbody></table>{foot}</div>")


def isolation_choice(value: str | None) -> str | None:
    """The category to isolate, or None for an empty value or the "(none)" entry."""
    name = " ".join(str(value or "").split())
    return None if not name or name == NO_ISOLATION else name


def vocabulary_note(segmenter: Segmenter, categories: Sequence[str]) -> str:
    """A hint when the sample's tiny model is asked about words it never saw (empty otherwise)."""
    if segmenter.config.clip_model != SAMPLE_BACKBONE:
        return ""
    unknown = [c for c in categories if c.lower() not in SAMPLE_CATEGORIES]
    if not unknown:
        return ""
    return f" Not in the sample model's vocabulary (expect noise): {', '.join(unknown)}."


def segment_sketch(segmenter: Segmenter, image: Image.Image | None, categories: Sequence[str], *,
                   isolate: str | None = None, threshold: float = DEFAULT_ISOLATION_THRESHOLD,
                   source: str = "typed", checkpoint_name: str = "") -> Outcome:
    """Segment ``image`` with ``categories`` (already checked) and build what the page shows; bad
    input and model errors become a failed ``Outcome`` with a message, never an exception."""
    if image is None:
        return failure("No sketch: draw one on the canvas or upload an image.")
    if not has_ink(image):
        return failure("The sketch is empty: draw some strokes (dark on white) or upload a sketch with ink.")
    isolate = isolation_choice(isolate)
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        return failure(f"The threshold must be a number in [0, 1], got {threshold!r}.")
    if not 0.0 <= threshold <= 1.0:
        return failure(f"The threshold must be in [0, 1], got {threshold}.")
    original = image.size
    work, downscaled = fit_work_size(image)
    try:
        result = segmenter.segment(work, list(categories), isolate=isolate, threshold=threshold, source="sketch")
    except (SketchSegError, ModelError, AppInputError) as exc:
        return failure(whole_message(exc))
    rows = shares(result)
    picture = overlay(result, legend=False)
    iso_picture = overlay(result, legend=False, isolated=True) if isolate is not None else None
    iso_pixels = int(result.isolated.sum()) if result.isolated is not None else None
    size = f"{original[0]}×{original[1]} px sketch"
    if downscaled:
        size += f" (segmented at {work.size[0]}×{work.size[1]})"
    origin = "from the caption" if source == "caption" else "typed"
    message = (f"Segmented a {size} into {len(rows)} categories ({origin}: {', '.join(result.categories)})"
               + (f" with {checkpoint_name}" if checkpoint_name else "") + "."
               + (" The sketch looked inverted (light on dark) and was inverted." if result.inverted else "")
               + vocabulary_note(segmenter, result.categories))
    logger.info("app: %s", message)
    return Outcome(ok=True, message=message, overlay=picture, isolated=iso_picture, shares=rows,
                   isolated_pixels=iso_pixels, isolated_name=isolate, threshold=threshold if isolate else None)
