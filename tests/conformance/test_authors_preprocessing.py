"""Conformance: ``model.input_resize: authors_bicubic_rgb8`` gives the authors' model input, byte for byte.

``fixtures/authors_checkpoint_sizes.npz`` holds, for sketches of 256, 384, 512 px and a 500 x 300 one,
the input their preprocessing (``models/clip.py`` ``_transform``, the transform ``models.load`` returns
to ``test.py`` / ``demo.py``) gives the model: the 8-bit RGB image after their ``Resize((224, 224),
BICUBIC)``, before ``ToTensor`` / ``Normalize`` (README.md in this folder). Fast: no model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sketchseg.api import image_to_grey, model_input

FIXTURE = Path(__file__).parent / "fixtures" / "authors_checkpoint_sizes.npz"

with np.load(FIXTURE, allow_pickle=False) as _data:
    SIZES = {k: _data[k] for k in _data.files}
N = len(SIZES["sizes"])


@pytest.mark.parametrize("i", range(N), ids=[f"{w}x{h}" for w, h in SIZES["sizes"]])
def test_model_input_is_theirs(i):
    image = SIZES[f"image_{i}"]
    w, h = (int(v) for v in SIZES["sizes"][i])
    assert image.shape == (h, w)
    grey, inverted = image_to_grey(image)  # the API's own reading of an 8-bit array
    assert not inverted
    inp = model_input(grey, 224, "authors_bicubic_rgb8")
    ours = np.rint(inp.pixels * 255.0).astype(np.uint8)
    np.testing.assert_array_equal(ours, SIZES[f"input224_{i}"])
    np.testing.assert_allclose(inp.pixels * 255.0, ours, atol=1e-4)  # exactly k / 255, as ToTensor gives
    assert inp.canvas == (h, w) and inp.offset == (0, 0)  # a non-square sketch is stretched, as theirs


@pytest.mark.parametrize("i", range(N), ids=[f"{w}x{h}" for w, h in SIZES["sizes"]])
def test_sketchsegs_own_resize_is_not_theirs(i):
    """The default (Lanczos on the float image, padded to a square) differs from their input: the
    reason the converted checkpoint carries ``input_resize: authors_bicubic_rgb8``."""
    grey, _ = image_to_grey(SIZES[f"image_{i}"])
    ours = np.rint(model_input(grey, 224, "lanczos_float").pixels * 255.0).astype(np.int16)
    assert (ours != SIZES[f"input224_{i}"]).mean() > 0.01
