"""Issue #27 (held up under abuse), ``sketchseg.api``: images over the pixel limit (paths, PIL images,
arrays) are refused before decoding or copying, with the source, the size and the limit; arrays of
complex numbers or objects and a checkpoint path of None are one clear error each."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from sketchseg.api import load_model
from sketchseg.errors import SketchSegConfigError, SketchSegDataError
from sketchseg.limits import MAX_IMAGE_PIXELS
from sketchseg.model.checkpoint import save_checkpoint
from sketchseg.model.config import ModelConfig
from sketchseg.model.model import build_model

TINY = dict(
    clip_model="sketchseg-tiny", pretrained=None, allow_random_init=True, image_size=64,
    vv_blocks=[4, 5, 6], cross_attention_layers=[4, 5, 6], category_loss_layers=[4, 5, 6],
)
SIDE = 7000  # 49 MP > 40 MP


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(path, build_model(ModelConfig(**TINY)), {"epoch": 1})
    return load_model(path, device="cpu")


def test_the_limit_is_forty_megapixels_and_pil_guards_it_too():
    assert MAX_IMAGE_PIXELS == 40_000_000
    assert Image.MAX_IMAGE_PIXELS == MAX_IMAGE_PIXELS


def test_a_small_file_with_too_many_pixels_is_refused_from_its_header(segmenter, tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (SIDE, SIDE), 1).save(bomb)
    assert bomb.stat().st_size < 1_000_000
    original = PngImagePlugin.PngImageFile.load

    def no_decode(self, *a, **k):
        if self.size == (SIDE, SIDE):
            raise AssertionError("decoded an image over the pixel limit")
        return original(self, *a, **k)

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decode)
    with pytest.raises(SketchSegDataError, match=rf"bomb.png: {SIDE}x{SIDE} pixels \(49.0 MP\) is too large; "
                                                 r"the limit is 40.0 MP \(40000000 pixels\)"):
        segmenter.segment(bomb, ["tree"])


def test_a_decompression_bomb_beyond_pil_s_own_guard_is_the_same_clear_error(segmenter, tmp_path):
    bomb = tmp_path / "huge.png"
    Image.new("1", (13000, 13000), 1).save(bomb)  # 169 MP: PIL itself refuses to open it
    with pytest.raises(SketchSegDataError, match=r"huge.png: too many pixels, above the limit of 40000000"):
        segmenter.segment(bomb, ["tree"])


def test_a_pil_image_over_the_limit_is_refused(segmenter):
    im = Image.new("1", (SIDE, SIDE), 1)
    with pytest.raises(SketchSegDataError, match=rf"<PIL image>: {SIDE}x{SIDE} pixels .* the limit is 40.0 MP"):
        segmenter.segment(im, ["tree"])
    with pytest.raises(SketchSegDataError, match=rf"scan.png: {SIDE}x{SIDE} pixels"):
        segmenter.segment(im, ["tree"], source="scan.png")


def test_an_array_over_the_limit_is_refused_before_it_is_copied(segmenter):
    huge = np.broadcast_to(np.float64(1.0), (30000, 30000))  # 900 MP, no memory behind it
    with pytest.raises(SketchSegDataError, match=r"<array>: 30000x30000 pixels \(900.0 MP\) is too large"):
        segmenter.segment(huge, ["tree"])


@pytest.mark.parametrize("arr, kind", [
    (np.ones((32, 32), np.complex64), "complex numbers"),
    (np.full((32, 32), 1.0, dtype=object), "Python objects"),
    (np.full((32, 32), "x"), "strings"),
])
def test_arrays_of_non_real_values_are_one_clear_error(segmenter, arr, kind):
    with pytest.raises(SketchSegDataError, match=rf"<array>: the array holds {kind} \(dtype"):
        segmenter.segment(arr, ["tree"])


@pytest.mark.parametrize("path", [None, 3, ""])
def test_load_model_without_a_path_is_a_config_error(path):
    with pytest.raises(SketchSegConfigError, match=r"checkpoint_path must be the path of a checkpoint file"):
        load_model(path)
