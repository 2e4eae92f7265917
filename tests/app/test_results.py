"""sketchseg.app.results: the legend, the shares and one segmentation as the page shows it."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from sketchseg.api import SegmentationResult, load_model
from sketchseg.app.results import (
    NO_ISOLATION, Share, isolation_choice, legend_html, segment_sketch, shares, vocabulary_note,
)

from .conftest import house_and_sun


def _result(label_map, categories):
    lm = np.asarray(label_map, dtype=np.int64)
    return SegmentationResult(label_map=lm, categories=categories, similarity=np.zeros((len(categories), *lm.shape),
                              np.float32), ink=lm >= 0, grey=np.where(lm >= 0, 0.0, 1.0).astype(np.float32))


def test_shares_count_ink_pixels_per_category():
    r = _result([[0, 0, -1, 1], [0, -1, -1, -1], [2, 2, 2, 2]], ["tree", "house", "sun"])
    rows = shares(r)
    assert [(s.category, s.pixels) for s in rows] == [("tree", 3), ("house", 1), ("sun", 4)]
    assert [round(s.percent, 4) for s in rows] == [37.5, 12.5, 50.0]          # of 8 ink pixels
    assert [s.color for s in rows] == ["#1f77b4", "#ff7f0e", "#2ca02c"]        # the overlay's palette
    empty = shares(_result([[-1, -1]], ["tree"]))
    assert empty[0].pixels == 0 and empty[0].percent == 0.0


def test_legend_html_lists_every_category_escaped():
    rows = [Share("tree", "#1f77b4", 3, 37.5), Share("<b>sun</b>", "#ff7f0e", 5, 62.5)]
    page = legend_html(rows)
    assert "<td>tree</td>" in page and "37.5%" in page and "62.5%" in page and "#ff7f0e" in page
    assert "&lt;b&gt;sun&lt;/b&gt;" in page and "<b>sun</b>" not in page
    assert "Isolated" not in page
    iso = legend_html(rows, isolated_pixels=2, isolated_name="tree", threshold=0.71)
    assert "Isolated <b>tree</b> (normalised map &gt; 0.71): 2 ink pixels, 25.0% of the ink." in iso
    assert legend_html([]) == "<div class='sketchseg-legend'></div>"


def test_isolation_choice():
    assert isolation_choice(NO_ISOLATION) is None and isolation_choice("") is None and isolation_choice(None) is None
    assert isolation_choice("  traffic   light ") == "traffic light"


@pytest.fixture(scope="module")
def segmenter(tiny_checkpoint):
    return load_model(tiny_checkpoint, device="cpu")


def test_segment_sketch_builds_the_page(segmenter):
    image = house_and_sun()
    out = segment_sketch(segmenter, image, ["house", "sun"], isolate="sun", threshold=0.71, checkpoint_name="m.st")
    assert out.ok, out.message
    assert out.message.startswith("Segmented a 240×160 px sketch into 2 categories (typed: house, sun) with m.st.")
    assert out.overlay.size == (240, 160) and out.isolated.size == (240, 160)
    direct = segmenter.segment(image, ["house", "sun"], isolate="sun", threshold=0.71)
    assert [s.pixels for s in out.shares] == list(direct.pixel_counts().values())
    assert out.isolated_pixels == int(direct.isolated.sum())
    assert "<td>house</td>" in out.legend_html and "Isolated <b>sun</b>" in out.legend_html
    plain = segment_sketch(segmenter, image, ["house", "sun"], isolate=NO_ISOLATION)
    assert plain.ok and plain.isolated is None and "Isolated" not in plain.legend_html


def test_segment_sketch_turns_bad_input_into_messages(segmenter):
    cases = [
        (None, {}, "No sketch: draw one"),
        (Image.new("RGB", (300, 200), "white"), {}, "The sketch is empty"),
        (house_and_sun(), {"threshold": 1.5}, r"threshold must be in \[0, 1\], got 1.5"),
        (house_and_sun(), {"threshold": "high"}, "threshold must be a number"),
    ]
    for image, kw, expected in cases:
        out = segment_sketch(segmenter, image, ["house"], **kw)
        assert not out.ok and out.overlay is None and out.message.startswith("**Problem:** ")
        assert re.search(expected, out.message), out.message


def test_big_sketches_are_segmented_downscaled(segmenter):
    big = house_and_sun().resize((2400, 1600), Image.Resampling.NEAREST)
    out = segment_sketch(segmenter, big, ["house", "sun"])
    assert out.ok and "2400×1600 px sketch (segmented at 1024×683)" in out.message
    assert out.overlay.size == (1024, 683)


def test_vocabulary_note_for_the_sample_backbone(segmenter):
    assert segmenter.config.clip_model == "sketchseg-tiny"
    assert vocabulary_note(segmenter, ["tree", "House"]) == ""
    assert vocabulary_note(segmenter, ["tree", "spaceship"]).endswith("(expect noise): spaceship.")
