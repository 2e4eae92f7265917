"""The served app through its API (gradio_client): the /segment and /extract endpoints."""

from __future__ import annotations

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from sketchseg.app.inputs import MAX_CATEGORIES

from .conftest import house_and_sun

# gradio's queue calls pandas options that pandas 3 deprecates: not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:.*:DeprecationWarning:gradio.queueing")


@pytest.fixture(scope="module")
def client(served_app):
    return Client(served_app, verbose=False)


def _segment(client, *, drawing=None, upload=None, source="upload", categories="house, sun", caption="",
             isolate="(none)", threshold=0.71, checkpoint=None):
    return client.predict(drawing, upload, source, categories, caption, isolate, threshold, checkpoint,
                          api_name="/segment")


def test_segment_an_uploaded_sketch(client, tmp_path):
    path = tmp_path / "house_and_sun.png"
    house_and_sun().save(path)
    message, overlay, legend, isolated = _segment(client, upload=handle_file(str(path)), isolate="sun")
    assert message.startswith("Segmented a 240×160 px sketch into 2 categories (typed: house, sun)"), message
    with Image.open(overlay) as im:
        assert im.size == (240, 160)
        rgb = np.asarray(im.convert("RGB"))
    assert len({tuple(c) for c in rgb.reshape(-1, 3)}) > 2           # coloured strokes on white
    assert "<td>house</td>" in legend and "<td>sun</td>" in legend
    assert "Isolated <b>sun</b> (normalised map &gt; 0.71)" in legend
    with Image.open(isolated) as im:
        assert im.size == (240, 160)


def test_segment_a_drawing_with_categories_from_a_caption(client, tmp_path):
    rgba = np.zeros((160, 240, 4), dtype=np.uint8)
    rgba[..., 3] = 0
    rgba[np.asarray(house_and_sun()) < 128] = (0, 0, 0, 255)   # the canvas: black strokes, transparent paper
    path = tmp_path / "composite.png"
    Image.fromarray(rgba).save(path)
    drawing = {"background": None, "layers": [], "composite": handle_file(str(path))}
    message, overlay, legend, _ = _segment(client, drawing=drawing, source="drawing", categories="",
                                           caption="A house under the sun")
    assert "into 2 categories (from the caption: house, sun)" in message, message
    assert overlay is not None and "<td>house</td>" in legend


def test_bad_input_gives_a_message_not_a_crash(client, tmp_path, tiny_checkpoint):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 100), "white").save(blank)
    notes = tmp_path / "notes.png"
    notes.write_text("this is text")
    many = ", ".join(f"thing {i}" for i in range(300))
    cases = [
        (dict(upload=handle_file(str(blank))), "The sketch is empty"),
        (dict(upload=handle_file(str(notes))), "notes.png: not an image"),
        (dict(upload=handle_file(str(blank)), categories=""), "No categories"),
        (dict(upload=handle_file(str(blank)), categories=many), f"300 categories given; at most {MAX_CATEGORIES}"),
        (dict(upload=None), "No file uploaded"),
        (dict(drawing=None, source="drawing"), "No sketch"),
        (dict(upload=handle_file(str(blank)), checkpoint=str(tiny_checkpoint.parent / "nope.safetensors")),
         f"No checkpoint at {tiny_checkpoint.parent / 'nope.safetensors'}: type the path"),
    ]
    for kwargs, expected in cases:
        message, overlay, legend, isolated = _segment(client, **kwargs)
        assert message.startswith("**Problem:**") and expected in message, (kwargs, message)
        assert message.count("nope.safetensors") <= 1, message  # the path once (it was doubled)
        assert overlay is None and legend == "" and isolated is None


def test_extract_endpoint(client):
    categories, message = client.predict("Two dogs chasing a kite near a bench", api_name="/extract")
    assert categories == "dog, kite, bench"
    assert message == "Categories from the caption: dog, kite, bench."


def test_only_the_apps_own_checkpoints_are_loaded(client, served_app, tmp_path, tiny_checkpoint):
    """#27: a file uploaded through the page's upload route (or any other file on the server),
    typed as the checkpoint, was built with whatever architecture its metadata named. The app
    loads its --checkpoint and the checkpoints under --models-dir only; a symlink out of that
    folder does not count."""
    import shutil

    from tests.app.conftest import make_checkpoint

    page = tmp_path / "house.png"
    house_and_sun().save(page)
    outside = make_checkpoint(tmp_path / "elsewhere" / "best.safetensors", seed=7)
    link = tiny_checkpoint.parent.parent / "link-out.safetensors"
    link.symlink_to(outside)
    uploaded = client.upload_files([str(outside)])[0] if hasattr(client, "upload_files") else None
    try:
        for path in filter(None, [str(outside), str(link), uploaded]):
            message, overlay, _, _ = _segment(client, upload=handle_file(str(page)), checkpoint=path)
            assert message.startswith("**Problem:**") and "is not one of this app's checkpoints" in message, message
            assert overlay is None
        inside = tiny_checkpoint.parent.parent / "copy" / "best.safetensors"  # a new file under --models-dir
        inside.parent.mkdir()
        shutil.copy(outside, inside)
        message, overlay, _, _ = _segment(client, upload=handle_file(str(page)), checkpoint=str(inside))
        assert message.startswith("Segmented"), message
    finally:
        link.unlink()
