"""The page: a Gradio Blocks app over ``sketchseg.api`` (the logic lives in ``inputs`` / ``results``).

One API endpoint, ``/segment`` (gradio_client: ``client.predict(..., api_name="/segment")``), with
the inputs drawing, upload, source ("drawing" | "upload"), categories, caption, isolate, threshold,
checkpoint and the outputs message, overlay, legend (HTML), isolated.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gradio as gr

from sketchseg.api import DEFAULT_ISOLATION_THRESHOLD
from sketchseg.app.checkpoints import MODELS_DIR, ModelCache, default_checkpoint, find_checkpoints, is_offered
from sketchseg.app.inputs import (
    MAX_CATEGORIES, MAX_UPLOAD_BYTES, REFUSED, SAMPLE_CATEGORIES, AppInputError, canvas_too_large, choose_categories,
    drawing_to_image, parse_categories, read_upload, whole_message,
)
from sketchseg.app.results import NO_ISOLATION, failure, segment_sketch
from sketchseg.errors import SketchSegError
from sketchseg.model.errors import CheckpointNotFoundError, ModelError

logger = logging.getLogger(__name__)

SOURCES = ("drawing", "upload")
CANVAS = (512, 512)

INTRO = f"""# sketchseg: segment a scene sketch
Draw a sketch (or upload one), name the categories to look for (or write a caption: its objects
become the categories, as in training), and press **Segment**. Every stroke pixel gets the most
similar category; *Isolate* shows the strokes of one category whose normalised similarity is above
the threshold (0.71 in the paper).

The sample model (`data/06_models/sample/ours-sample/best.safetensors`, trained by `bash scripts/demo.sh` on
generated sketches) only knows its generator's {len(SAMPLE_CATEGORIES)} categories:
*{", ".join(SAMPLE_CATEGORIES)}*. A model trained on FS-COCO (or the authors' converted checkpoint)
takes any words.
"""


def check_canvas_first(sketchpad: gr.Sketchpad) -> gr.Sketchpad:
    """``sketchpad`` whose canvas images are checked for their pixel count (from the header) before
    gradio decodes them: a small PNG of 13000 x 13000 pixels sent as the drawing becomes a message
    on the page (``drawing_to_image`` raises it), not gigabytes of decoded pixels or gradio's
    generic "upstream app raised an exception". (An instance attribute, not a subclass: gradio
    writes a ``.pyi`` stub beside the module of every component subclass.)"""
    decode = sketchpad.preprocess

    def preprocess(payload: Any) -> Any:
        if payload is not None:
            data = payload
            if getattr(payload, "id", None) is not None:
                data = sketchpad.blob_storage.get(payload.id)
            if data is not None:
                files = [data.background, *(data.layers or []), data.composite]
                why = canvas_too_large([getattr(f, "path", f) for f in files])
                if why:
                    logger.warning("drawing refused before decoding: %s", why)
                    return {"background": None, "layers": [], "composite": None, REFUSED: why}
        return decode(payload)

    sketchpad.preprocess = preprocess  # type: ignore[method-assign]
    return sketchpad


class SegmentApp:
    """The callbacks of the page, bound to a model cache (testable without a server)."""

    def __init__(self, cache: ModelCache, default: str | None = None, *, models_dir: str | Path = MODELS_DIR) -> None:
        self.cache = cache
        self.default = default
        self.models_dir = models_dir  # the only folder whose checkpoints it loads (and ``default``)

    def segment(self, drawing: Any, upload: Any, source: str, categories: str, caption: str, isolate: str | None,
                threshold: float, checkpoint: str | None) -> tuple[str, Any, str, Any]:
        """(message, overlay, legend HTML, isolation picture) for the page; never raises on bad input."""
        try:
            image = self._image(drawing, upload, source)
            names, origin = choose_categories(categories, caption)
        except AppInputError as exc:
            return self._show(failure(str(exc)))
        ckpt = (checkpoint or self.default or "").strip()
        if not ckpt:
            return self._show(failure("No checkpoint: type the path of a sketchseg .safetensors checkpoint."))
        if not is_offered(ckpt, self.models_dir, self.default):
            return self._show(failure(f"{ckpt} is not one of this app's checkpoints: it loads those under "
                                      f"{self.models_dir} and the one it was started with (restart it with "
                                      "--checkpoint or --models-dir to serve another)."))
        try:
            segmenter = self.cache.get(ckpt)
        except CheckpointNotFoundError:
            return self._show(failure(f"No checkpoint at {ckpt}: type the path of a sketchseg .safetensors "
                                      "checkpoint."))
        except (SketchSegError, ModelError, OSError, ValueError) as exc:
            return self._show(failure(f"Cannot load the checkpoint {ckpt}: {whole_message(exc)}"))
        return self._show(segment_sketch(segmenter, image, names, isolate=isolate, threshold=threshold,
                                         source=origin, checkpoint_name=Path(ckpt).name))

    @staticmethod
    def _image(drawing: Any, upload: Any, source: str):
        if source == "upload":
            if upload is None:
                raise AppInputError("No file uploaded: upload a sketch in the Upload tab, or choose the drawing.")
            return read_upload(upload if isinstance(upload, (str, Path)) else getattr(upload, "name", upload))
        if source not in SOURCES:
            raise AppInputError(f"Unknown sketch source {source!r}: choose one of {', '.join(SOURCES)}.")
        return drawing_to_image(drawing)

    @staticmethod
    def _show(outcome) -> tuple[str, Any, str, Any]:
        return outcome.message, outcome.overlay, outcome.legend_html if outcome.ok else "", outcome.isolated

    @staticmethod
    def extract(caption: str) -> tuple[str, str]:
        """(categories text, message) from a caption, for the Extract button."""
        try:
            names, _ = choose_categories("", caption)
        except AppInputError as exc:
            return gr.skip(), failure(str(exc)).message
        return ", ".join(names), f"Categories from the caption: {', '.join(names)}."

    @staticmethod
    def isolate_choices(categories: str):
        """The isolate dropdown offers "(none)" and the typed categories."""
        return gr.Dropdown(choices=[NO_ISOLATION, *parse_categories(categories)[:MAX_CATEGORIES]])


def build_app(*, checkpoint: str | None = None, models_dir: str | Path = MODELS_DIR, device: str = "cpu",
              cache: ModelCache | None = None) -> gr.Blocks:
    """The Blocks page; ``checkpoint`` is selected first, the others found under ``models_dir``."""
    choices = find_checkpoints(models_dir, [checkpoint] if checkpoint else None)
    default = checkpoint or default_checkpoint(choices)
    logic = SegmentApp(cache or ModelCache(device=device), default, models_dir=models_dir)
    with gr.Blocks(title="sketchseg app", analytics_enabled=False) as page:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1):
                with gr.Tabs():
                    with gr.Tab("Draw", id="draw") as tab_draw:
                        drawing = check_canvas_first(gr.Sketchpad(
                            label="Sketch (draw with the mouse or a pen)", type="numpy", image_mode="RGBA",
                            canvas_size=CANVAS, fixed_canvas=True, layers=False, transforms=(),
                            brush=gr.Brush(default_size=4, colors=["#000000"], default_color="#000000",
                                           color_mode="fixed"),
                            elem_id="drawing",
                        ))
                    with gr.Tab("Upload", id="upload") as tab_upload:
                        upload = gr.File(label=f"Sketch image (PNG, JPEG, WebP...; at most "
                                               f"{MAX_UPLOAD_BYTES // 2**20} MB)", type="filepath", elem_id="upload")
                source = gr.Radio(list(SOURCES), value="drawing", label="Segment the", elem_id="source")
                categories = gr.Textbox(label=f"Categories (comma or semicolon separated, at most {MAX_CATEGORIES})",
                                        placeholder="tree, house, sun", elem_id="categories")
                with gr.Row():
                    caption = gr.Textbox(label="...or a caption (its objects become the categories)",
                                         placeholder="A house beside a tree under the sun", elem_id="caption", scale=3)
                    extract = gr.Button("Extract categories", elem_id="extract", scale=1)
                with gr.Row():
                    isolate = gr.Dropdown([NO_ISOLATION], value=NO_ISOLATION, allow_custom_value=True,
                                          label="Isolate one category", elem_id="isolate")
                    threshold = gr.Slider(0.0, 1.0, value=DEFAULT_ISOLATION_THRESHOLD, step=0.01,
                                          label="Isolation threshold", elem_id="threshold")
                ckpt = gr.Dropdown(choices, value=default, allow_custom_value=True, elem_id="checkpoint",
                                   label=f"Checkpoint (a sketchseg .safetensors file under {models_dir}: the "
                                         "demo's, a converted authors' one, a run's best)")
                run = gr.Button("Segment", variant="primary", elem_id="segment")
            with gr.Column(scale=1):
                message = gr.Markdown("", elem_id="message")
                shown = gr.Image(label="Segmentation", type="pil", format="png", interactive=False, elem_id="overlay")
                legend = gr.HTML("", elem_id="legend")
                isolated = gr.Image(label="Isolated category (grey: the other strokes)", type="pil", format="png",
                                    interactive=False, elem_id="isolated")
        tab_draw.select(lambda: "drawing", None, source, api_visibility="private")
        tab_upload.select(lambda: "upload", None, source, api_visibility="private")
        upload.upload(lambda: "upload", None, source, api_visibility="private")
        categories.change(logic.isolate_choices, categories, isolate, api_visibility="private")
        extract.click(logic.extract, caption, [categories, message], api_name="extract")
        run.click(logic.segment, [drawing, upload, source, categories, caption, isolate, threshold, ckpt],
                  [message, shown, legend, isolated], api_name="segment")
    return page
