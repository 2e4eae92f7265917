"""Issue #27 (held up under abuse), the app: drawings over the pixel limit and captions over the
length limit are a message on the page, before anything is decoded or tagged; through the page's
Python handlers and through the served HTTP API."""

from __future__ import annotations

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from sketchseg.app.checkpoints import ModelCache
from sketchseg.app.inputs import MAX_UPLOAD_PIXELS, AppInputError, choose_categories, drawing_to_image
from sketchseg.app.ui import SegmentApp
from sketchseg.limits import MAX_CAPTION_CHARS, MAX_IMAGE_PIXELS

from .conftest import house_and_sun

pytestmark = pytest.mark.filterwarnings("ignore:.*:DeprecationWarning:gradio.queueing")

SIDE = 7000  # 49 MP > 40 MP


@pytest.fixture(scope="module")
def client(served_app):
    return Client(served_app, verbose=False)


def _segment(client, *, drawing=None, upload=None, source="drawing", categories="house, sun", caption=""):
    return client.predict(drawing, upload, source, categories, caption, "(none)", 0.71, None, api_name="/segment")


def _bomb(path, side=SIDE):
    Image.new("1", (side, side), 1).save(path)  # a few kB of PNG, side x side pixels
    assert path.stat().st_size < 1_000_000
    return path


def test_one_pixel_limit_for_uploads_drawings_and_the_api():
    assert MAX_UPLOAD_PIXELS == MAX_IMAGE_PIXELS == 40_000_000


@pytest.mark.parametrize("value", [
    np.broadcast_to(np.uint8(255), (SIDE, SIDE, 4)),           # gradio's numpy canvas
    Image.new("1", (SIDE, SIDE), 1),                            # a PIL canvas
    {"composite": None, "background": None, "layers": [np.broadcast_to(np.uint8(0), (SIDE, SIDE, 4))]},
])
def test_a_drawing_over_the_pixel_limit_is_refused(value):
    with pytest.raises(AppInputError, match=rf"The drawing: {SIDE}x{SIDE} pixels is too large \(at most 40 megapixels\)"):
        drawing_to_image(value)


def test_the_segment_handler_refuses_a_huge_drawing_file(tiny_checkpoint, tmp_path):
    app = SegmentApp(ModelCache(device="cpu"), str(tiny_checkpoint))
    bomb = _bomb(tmp_path / "composite.png")
    message, overlay, _, _ = app.segment({"composite": str(bomb), "background": None, "layers": []}, None,
                                         "drawing", "house", "", None, 0.71, None)
    assert message.startswith("**Problem:**") and f"{SIDE}x{SIDE} pixels is too large" in message, message
    assert overlay is None


@pytest.mark.parametrize("side, expected", [(SIDE, f"{SIDE}x{SIDE} pixels is too large"),
                                            (13000, "too many pixels (at most 40 megapixels)")])
def test_the_served_page_refuses_a_huge_canvas_with_a_message(client, tmp_path, side, expected, caplog):
    """The canvas image is checked from its header before gradio decodes it (13000 x 13000: 169 MP,
    beyond PIL's own guard too): a message on the page, not 'upstream app raised an exception'."""
    bomb = _bomb(tmp_path / "composite.png", side)
    drawing = {"background": None, "layers": [], "composite": handle_file(str(bomb))}
    with caplog.at_level("WARNING", logger="sketchseg.app.ui"):
        message, overlay, legend, _ = _segment(client, drawing=drawing)
    assert message.startswith("**Problem:**") and expected in message, message
    assert overlay is None and legend == ""
    assert "drawing refused before decoding" in caplog.text  # not after gradio decoded it


def test_a_caption_over_the_length_limit_is_refused_untagged(monkeypatch):
    import sketchseg.app.inputs as inputs

    monkeypatch.setattr(inputs, "extract_categories", lambda *a, **k: pytest.fail("a too long caption was tagged"))
    long = "a dog " * (MAX_CAPTION_CHARS // 6 + 1)
    for typed in ("", "dog"):  # also beside typed categories: the field is refused, not ignored
        with pytest.raises(AppInputError, match=rf"The caption has {len(long)} characters; at most {MAX_CAPTION_CHARS}"):
            choose_categories(typed, long)


def test_extract_and_segment_endpoints_refuse_a_long_caption(client, tmp_path):
    long = "a house next to a tree " * 2000  # 46 KB
    categories, message = client.predict(long, api_name="/extract")
    assert f"The caption has {len(long)} characters; at most {MAX_CAPTION_CHARS}" in message, message
    sketch = tmp_path / "sketch.png"
    house_and_sun().save(sketch)
    message, overlay, _, _ = _segment(client, categories="", caption=long, source="upload",
                                      upload=handle_file(str(sketch)))
    assert f"at most {MAX_CAPTION_CHARS}" in message and overlay is None


@pytest.mark.timeout(60)
def test_an_upload_that_is_no_regular_file_is_never_opened(tmp_path):
    import os

    from sketchseg.app.inputs import read_upload

    pipe = tmp_path / "sketch.png"
    os.mkfifo(pipe)
    with pytest.raises(AppInputError, match=r"sketch.png: the upload is a FIFO \(named pipe\), not a regular file"):
        read_upload(pipe)
    with pytest.raises(AppInputError, match=r"folder.png: the upload is a directory, not a regular file"):
        read_upload((tmp_path / "folder.png").mkdir() or tmp_path / "folder.png")
