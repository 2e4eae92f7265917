"""sketchseg.app.inputs: categories, captions, drawings and uploads as the page sends them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sketchseg.app.inputs import (
    MAX_CATEGORIES, AppInputError, check_categories, choose_categories, drawing_to_image, fit_work_size, has_ink,
    parse_categories, read_upload,
)

from .conftest import house_and_sun


def test_parse_categories_splits_cleans_and_dedupes():
    typed = " tree, house ;sun\n\n Tree ,  traffic   light,,"
    assert parse_categories(typed) == ["tree", "house", "sun", "traffic light"]
    assert parse_categories("") == [] and parse_categories(None) == [] and parse_categories(" ,; \n") == []


def test_check_categories_refuses_none_too_many_and_too_long():
    assert check_categories(["tree"]) == ["tree"]
    with pytest.raises(AppInputError, match="No categories"):
        check_categories([])
    many = parse_categories(", ".join(f"thing{i}" for i in range(300)))
    assert len(many) == 300
    with pytest.raises(AppInputError, match=f"300 categories given; at most {MAX_CATEGORIES}"):
        check_categories(many)
    assert len(check_categories(many[:MAX_CATEGORIES])) == MAX_CATEGORIES
    with pytest.raises(AppInputError, match="longer than 60"):
        check_categories(["x" * 61])


def test_categories_come_from_the_caption_as_in_training(nltk_data_path):
    names, origin = choose_categories("", "Two giraffes near a tree and a fence in the background",
                                      nltk_data_path=nltk_data_path)
    assert (names, origin) == (["giraffe", "tree", "fence"], "caption")  # plural singularised, stop word dropped
    names, origin = choose_categories("dog; kite", "a giraffe")  # typed ones win
    assert (names, origin) == (["dog", "kite"], "typed")
    with pytest.raises(AppInputError, match="No object found in the caption"):
        choose_categories("", "very quickly", nltk_data_path=nltk_data_path)
    with pytest.raises(AppInputError, match="No categories"):
        choose_categories("  ", "  ")


def test_caption_without_nltk_data_is_a_message(monkeypatch, tmp_path):
    import nltk

    from sketchseg.text import nltk_setup

    monkeypatch.setenv("NLTK_DATA", str(tmp_path))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    monkeypatch.setattr(nltk_setup, "project_nltk_dirs", lambda: [])  # the project's data/00_nltk out of it
    with pytest.raises(AppInputError) as info:
        choose_categories("", "a dog")
    message = str(info.value)  # the caption box shows it: one line, naming the folders searched
    assert message.startswith("Cannot read the caption: NLTK data missing: punkt_tab") and "\n" not in message
    assert f"searched {tmp_path}" in message and "bash scripts/setup.sh" in message


def test_drawing_value_is_composited_on_white():
    rgba = np.zeros((40, 60, 4), dtype=np.uint8)          # fully transparent canvas ...
    rgba[10:14, 5:50] = (0, 0, 0, 255)                     # ... with one black stroke
    im = drawing_to_image({"background": None, "layers": [], "composite": rgba})
    assert im.size == (60, 40)
    grey = np.asarray(im.convert("L"))
    assert (grey[:10] == 255).all() and (grey[10:14, 5:50] == 0).all()
    assert has_ink(im)
    assert not has_ink(drawing_to_image({"composite": np.zeros((40, 60, 4), dtype=np.uint8)}))  # empty canvas
    assert drawing_to_image(None) is None and drawing_to_image({"composite": None, "layers": []}) is None
    # no composite: background and layers are flattened
    layer = np.zeros((40, 60, 4), dtype=np.uint8)
    layer[20:22] = (0, 0, 0, 255)
    flat = np.asarray(drawing_to_image({"composite": None, "background": np.full((40, 60, 4), 255, np.uint8),
                                        "layers": [layer]}).convert("L"))
    assert (flat[20:22] == 0).all() and (flat[:20] == 255).all()
    with pytest.raises(AppInputError, match="unexpected shape"):
        drawing_to_image(np.zeros((4, 4, 2), dtype=np.uint8))


def test_has_ink():
    assert has_ink(house_and_sun())
    assert not has_ink(Image.new("L", (30, 30), 255))
    assert not has_ink(Image.new("L", (30, 30), 0))          # all black: inverted, it is an empty page
    assert not has_ink(Image.new("L", (30, 30), 140))        # light grey: no pixel at or below 0.5


def test_read_upload_checks_before_decoding(tmp_path):
    good = tmp_path / "sketch.png"
    house_and_sun(mode="RGBA").save(good)
    im = read_upload(good)
    assert im.size == (240, 160) and has_ink(im)
    assert read_upload(None) is None and read_upload("") is None
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    with pytest.raises(AppInputError, match=r"notes.png: not an image"):
        read_upload(text)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(AppInputError, match="empty.png: the file is empty"):
        read_upload(tmp_path / "empty.png")
    with pytest.raises(AppInputError, match=r"sketch.png: .* MB is too large"):
        read_upload(good, max_bytes=100)
    with pytest.raises(AppInputError, match=r"sketch.png: 240x160 pixels is too large"):
        read_upload(good, max_pixels=240 * 160 - 1)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(AppInputError, match="cut.png: a broken image"):
        read_upload(truncated)


def test_a_small_file_with_too_many_pixels_is_refused_undecoded(tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (8000, 6000), 1).save(bomb)  # 48 megapixels in a few kB
    assert bomb.stat().st_size < 100_000
    with pytest.raises(AppInputError, match="8000x6000 pixels is too large"):
        read_upload(bomb)


def test_fit_work_size_downscales_keeping_the_aspect():
    im = Image.new("L", (3000, 1500), 255)
    out, done = fit_work_size(im, 1024)
    assert done and out.size == (1024, 512)
    same, done = fit_work_size(house_and_sun(), 1024)
    assert not done and same.size == (240, 160)



def test_a_loaders_reason_after_the_first_line_reaches_the_page(tiny_checkpoint, tmp_path):
    """#27: a bad TorchScript file's reason was cut off on the page (only the first line shown)."""
    from sketchseg.app.checkpoints import ModelCache
    from sketchseg.app.ui import SegmentApp
    from sketchseg.model.errors import ModelError

    class Broken(ModelCache):
        def get(self, checkpoint):
            raise ModelError(f"{checkpoint}: could not read the TorchScript archive\n  reason: PytorchStreamReader "
                             "failed locating file constants.pkl: file not found")

    app = SegmentApp(Broken(), str(tiny_checkpoint), models_dir=tiny_checkpoint.parent)
    sketch = tmp_path / "house.png"
    house_and_sun().save(sketch)
    message, overlay, _, _ = app.segment(None, str(sketch), "upload", "house, sun", "", None, 0.71, None)
    assert "could not read the TorchScript archive reason: PytorchStreamReader failed locating file constants.pkl" \
        in message and overlay is None
