"""Conformance: the authors' released checkpoint, converted, gives the maps and labels of their forward.

``fixtures/authors_checkpoint_forward.npz`` holds the outputs of their own model code
(AhmedBourouis/Scene-Sketch-Segmentation at af751b1: ``models/our_model.py``, ``models/ca.py``,
``models/clip.py``, the lines of ``test.py`` / ``demo.py`` that score a sketch; README.md in this
folder) on 3 generated 224-px sketches, run with random ViT-B/16 weights in their exact checkpoint
layout. The weights are not stored: the test regenerates them from the stored key names, shapes and
seed (``authors_recipe.py``), writes them as their file is written (``torch.save`` of the
``module.``-prefixed state dict), converts that file with ``sketchseg.weights`` and runs sketchseg.
``fixtures/authors_checkpoint_sizes.npz`` holds their outputs on sketches of 256, 384 and 512 px and
a 500 x 300 one, which ``sketchseg.api.Segmenter.segment`` must reproduce from the image file's
pixels (their preprocessing: ``model.input_resize: authors_bicubic_rgb8``).
Slow (ViT-B/16 with the 85-template text ensemble on the CPU, a few minutes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conformance import authors_recipe as recipe

FIXTURE = Path(__file__).parent / "fixtures" / "authors_checkpoint_forward.npz"
SIZES = Path(__file__).parent / "fixtures" / "authors_checkpoint_sizes.npz"
N_SIZES = 5
ATOL = 1e-4  # fp32 on both sides

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fixture() -> dict[str, np.ndarray]:
    with np.load(FIXTURE, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def converted(fixture, tmp_path_factory):
    """(model, cfg, metadata) of the converted random checkpoint; the state dict is regenerated,
    saved the authors' way, converted with the real converter and loaded as any checkpoint."""
    from sketchseg.api import load_model
    from sketchseg.weights.authors import convert_authors_checkpoint

    folder = tmp_path_factory.mktemp("authors")
    keys = [str(k) for k in fixture["key_names"]]
    state = recipe.regenerate(keys, recipe.parse_shapes(fixture["key_shapes"]), int(fixture["seed"]))
    src = recipe.write_checkpoint(state, folder / "sketch_seg_best_miou.pth")
    del state
    conversion = convert_authors_checkpoint(src, folder / "authors.safetensors")
    src.unlink()
    segmenter = load_model(folder / "authors.safetensors", device="cpu")
    return segmenter.model, conversion


@pytest.fixture(scope="module")
def sizes() -> dict[str, np.ndarray]:
    with np.load(SIZES, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _categories(fixture, i: int) -> list[str]:
    off = fixture["category_offsets"]
    return [str(c) for c in fixture["categories"][off[i]:off[i + 1]]]


def _image(fixture, i: int) -> torch.Tensor:
    grey = torch.from_numpy(fixture["images"][i].astype(np.float32) / 255.0)
    return grey.expand(3, -1, -1).unsqueeze(0)


def _maps(model, fixture, i: int, size, **cfg):
    """model.segment on sketch ``i`` with ``cfg`` set for the call."""
    old = {k: getattr(model.cfg, k) for k in cfg}
    for k, v in cfg.items():
        setattr(model.cfg, k, v)
    try:
        return model.segment(_image(fixture, i), [_categories(fixture, i)], size=size)[0]
    finally:
        for k, v in old.items():
            setattr(model.cfg, k, v)


def test_conversion_maps_every_key(converted, fixture):
    model, conversion = converted
    assert not conversion.unknown
    assert len(conversion.superseded) == 4  # block 7's attention: visual.attn.* holds the same tensors
    assert sorted([*conversion.sources.values(), *conversion.superseded]) == sorted(
        k for k in map(str, fixture["key_names"])
        if not k.startswith(("visual.transformer.ca.encoder.layers.", "visual.transformer.ca.encoder.layer1.",
                             "transformer.ca.")))
    assert all(k.startswith(("visual.transformer.ca.encoder.layers.", "visual.transformer.ca.encoder.layer1.",
                             "transformer.ca.")) for k in conversion.dropped)
    assert model.cfg.test_time_cross_attention == "authors" and model.cfg.feature_normalization == "authors_test"


@pytest.mark.parametrize("i", [0, 1, 2])
def test_category_text_is_their_ensemble(converted, fixture, i):
    model, _ = converted
    ours = model.ensemble_text(_categories(fixture, i)).cpu()
    np.testing.assert_allclose(ours.numpy(), fixture[f"text_features_{i}"], atol=ATOL)


@pytest.mark.parametrize("i", [0, 1, 2])
@pytest.mark.parametrize("script", ["test", "demo"])
def test_patch_similarities_are_theirs(converted, fixture, i, script):
    """Their raw similarities (before min-max): test.py normalises over the categories, demo.py over the tokens."""
    model, _ = converted
    raw = _maps(model, fixture, i, None, inference_normalization="none", feature_normalization=f"authors_{script}")
    theirs = fixture[f"{script}_patch_similarity_{i}"]
    np.testing.assert_allclose(raw.reshape(raw.shape[0], -1).numpy(), theirs, atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("i", [0, 1, 2])
def test_similarity_maps_are_theirs(converted, fixture, i):
    """test.py's maps: min-max over the patches, bilinear to the map size (their get_similarity_map)."""
    model, _ = converted
    size = int(fixture["map_size"])
    maps = _maps(model, fixture, i, size)
    np.testing.assert_allclose(maps.numpy(), fixture[f"test_maps_{i}"], atol=ATOL)


@pytest.mark.parametrize("i", [0, 1, 2])
@pytest.mark.parametrize("script", ["test", "demo"])
def test_label_maps_are_theirs(converted, fixture, i, script):
    model, _ = converted
    maps = _maps(model, fixture, i, 224, feature_normalization=f"authors_{script}")
    labels = maps.argmax(dim=0).numpy()
    theirs = fixture[f"{script}_labels_{i}"]
    differ = labels != theirs
    if differ.any():  # only where two maps tie to within float rounding
        top2 = torch.topk(maps, 2, dim=0).values.numpy()
        assert (top2[0] - top2[1])[differ].max() < 1e-5, f"{differ.sum()} pixels labelled otherwise"
    assert differ.mean() < 1e-3


@pytest.mark.parametrize("i", range(N_SIZES), ids=["256", "384", "512", "512-aa", "500x300"])
@pytest.mark.parametrize("script", ["test", "demo"])
def test_segment_gives_their_maps_and_labels_at_any_size(converted, sizes, i, script):
    """``Segmenter.segment`` on the sketch's own pixels (any size, any aspect) gives their maps at
    the image's size and their labels on the ink: their preprocessing (8-bit RGB, bicubic, stretched
    to 224), their scoring, min-max maps upsampled bilinear to (H, W). For the 500 x 300 sketch their
    code asks for a (W, H) map (``pil_img.size``); the fixture holds their map at (H, W)."""
    from sketchseg.api import Segmenter

    model, _ = converted
    assert model.cfg.input_resize == "authors_bicubic_rgb8"
    old = model.cfg.feature_normalization
    model.cfg.feature_normalization = f"authors_{script}"
    try:
        result = Segmenter(model, device=torch.device("cpu")).segment(sizes[f"image_{i}"], _categories(sizes, i))
    finally:
        model.cfg.feature_normalization = old
    start, step = (int(v) for v in sizes["map_sub"])
    np.testing.assert_allclose(result.similarity[:, start::step, start::step], sizes[f"{script}_maps_sub_{i}"],
                               atol=ATOL)
    theirs = sizes[f"{script}_labels_{i}"].astype(np.int64)
    assert theirs.shape == result.label_map.shape
    ink = result.ink
    differ = (result.label_map != theirs) & ink
    if differ.any():  # only where two maps tie to within float rounding
        top2 = np.sort(result.similarity, axis=0)[-2:]
        assert (top2[1] - top2[0])[differ].max() < 1e-5, f"{differ.sum()} of {ink.sum()} ink pixels labelled otherwise"
    assert differ.sum() / ink.sum() < 1e-3
