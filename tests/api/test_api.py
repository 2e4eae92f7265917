"""sketchseg.api: load a checkpoint, segment sketches the test draws itself (any size / mode)."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from sketchseg.api import SegmentationResult, label_map_image, load_model, mask_image, overlay
from sketchseg.pipelines.datasets import SafetensorsCheckpointDataset
from sketchseg.errors import SketchSegConfigError, SketchSegDataError
from sketchseg.model.checkpoint import checkpoint_metadata, save_checkpoint, trainable_state_dict
from sketchseg.model.config import ModelConfig
from sketchseg.model.errors import CheckpointMismatchError, CheckpointNotFoundError
from sketchseg.model.model import build_model

TINY = dict(
    clip_model="sketchseg-tiny", pretrained=None, allow_random_init=True, image_size=64,
    vv_blocks=[4, 5, 6], cross_attention_layers=[4, 5, 6], category_loss_layers=[4, 5, 6],
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny random-weight model whose prompts / LayerNorms are perturbed, saved with save_checkpoint."""
    model = build_model(ModelConfig(**TINY))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(path, model, {"epoch": 3})
    return path, model


@pytest.fixture(scope="module")
def segmenter(checkpoint):
    return load_model(checkpoint[0], device="cpu")


def draw_rgba(size=(300, 200)) -> Image.Image:
    """Black strokes on a TRANSPARENT background: a lollipop tree and a house."""
    im = Image.new("RGBA", size, (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    d.ellipse([20, 20, 120, 120], outline=(0, 0, 0, 255), width=4)
    d.line([70, 120, 70, 190], fill=(0, 0, 0, 255), width=5)
    d.rectangle([170, 90, 280, 180], outline=(0, 0, 0, 255), width=4)
    d.polygon([(160, 90), (225, 30), (290, 90)], outline=(0, 0, 0, 255), width=4)
    return im


def draw_grey(size=(180, 320)) -> Image.Image:
    """Portrait greyscale sketch: a sun and grass strokes."""
    im = Image.new("L", size, 255)
    d = ImageDraw.Draw(im)
    d.ellipse([50, 20, 130, 100], outline=0, width=5)
    for x in range(15, 170, 25):
        d.line([(x, 310), (x + 8, 250)], fill=30, width=4)
    return im


def test_segment_rgba_sketch_at_its_own_size(segmenter):
    image = draw_rgba()
    result = segmenter.segment(image, ["tree", "house", "sun"])
    assert isinstance(result, SegmentationResult)
    assert result.label_map.shape == (200, 300) and result.image_size == (300, 200)
    assert result.similarity.shape == (3, 200, 300) and result.similarity.dtype == np.float32
    alpha = np.asarray(image)[..., 3]
    paper = alpha == 0
    assert (result.label_map[paper] == -1).all()          # transparent = white paper
    ink = alpha == 255
    assert ink.sum() > 500
    assert (result.label_map[ink] >= 0).all() and result.label_map.max() < 3
    assert result.categories == ["tree", "house", "sun"]
    assert result.isolated is None
    # the label is the argmax of the returned similarity maps
    np.testing.assert_array_equal(result.label_map[ink], result.similarity.argmax(axis=0)[ink])


def test_greyscale_portrait_and_file_inputs_agree(segmenter, tmp_path):
    image = draw_grey()
    path = tmp_path / "sun.png"
    image.save(path)
    cats = ["sun", "grass"]
    from_pil = segmenter.segment(image, cats)
    from_file = segmenter.segment(path, cats)
    from_uint8 = segmenter.segment(np.asarray(image), cats)
    from_float = segmenter.segment(np.asarray(image, dtype=np.float32) / 255.0, cats)
    assert from_pil.label_map.shape == (320, 180)
    for other in (from_file, from_uint8, from_float):
        np.testing.assert_array_equal(other.label_map, from_pil.label_map)
    grey = np.asarray(image)
    assert (from_pil.label_map[grey == 255] == -1).all()
    assert (from_pil.label_map[grey <= 30] >= 0).all()


def test_inverted_sketch_is_read_as_ink_on_paper(segmenter):
    image = draw_grey()
    inverted = Image.fromarray(255 - np.asarray(image))
    a = segmenter.segment(image, ["sun", "grass"])
    b = segmenter.segment(inverted, ["sun", "grass"])
    assert b.inverted and not a.inverted
    np.testing.assert_array_equal(a.label_map, b.label_map)


def test_paper_threshold_decides_ink(checkpoint):
    im = Image.new("L", (64, 48), 255)
    ImageDraw.Draw(im).line([(5, 10), (60, 10)], fill=0, width=3)
    ImageDraw.Draw(im).line([(5, 30), (60, 30)], fill=170, width=3)  # light pencil, grey 0.67
    strict = load_model(checkpoint[0], device="cpu", paper_threshold=0.5).segment(im, ["line"])
    loose = load_model(checkpoint[0], device="cpu", paper_threshold=0.8).segment(im, ["line"])
    assert (strict.label_map[30] == -1).all() and (loose.label_map[30, 10:50] == 0).all()
    assert (strict.label_map[10, 10:50] == 0).all()


def test_different_categories_give_different_maps(segmenter):
    image = draw_rgba()
    a = segmenter.segment(image, ["tree", "house"])
    b = segmenter.segment(image, ["car", "dog", "boat"])
    assert a.similarity.shape[0] == 2 and b.similarity.shape[0] == 3
    assert not np.allclose(a.similarity[0], b.similarity[0])
    # the map of a category does not depend on the other categories of the list
    c = segmenter.segment(image, ["house", "tree"])
    np.testing.assert_allclose(a.similarity[0], c.similarity[1], atol=1e-5)


def test_isolation_mask(segmenter):
    image = draw_rgba()
    low = segmenter.segment(image, ["tree", "house"], isolate="tree", threshold=0.0)
    mid = segmenter.segment(image, ["tree", "house"], isolate="tree", threshold=0.5)
    high = segmenter.segment(image, ["tree", "house"], isolate="tree", threshold=1.0)
    ink = low.ink
    for r in (low, mid, high):
        assert r.isolated.shape == (200, 300) and r.isolated.dtype == bool
        assert not (r.isolated & ~ink).any()                  # paper is never isolated
    assert high.isolated.sum() == 0
    assert low.isolated.sum() >= mid.isolated.sum() > 0
    assert low.isolated.sum() > 0.9 * ink.sum()
    # a category outside the list can be isolated too
    other = segmenter.segment(image, ["house"], isolate="tree", threshold=0.5)
    np.testing.assert_array_equal(other.isolated, mid.isolated)
    m = np.asarray(mask_image(mid))
    assert m.shape == (200, 300) and set(np.unique(m)) <= {0, 255}
    np.testing.assert_array_equal(m == 255, mid.isolated)


def test_loaded_model_matches_the_saved_one(checkpoint, segmenter):
    _, model = checkpoint
    loaded = trainable_state_dict(segmenter.model)
    for key, value in trainable_state_dict(model).items():
        torch.testing.assert_close(loaded[key], value)
    fresh = build_model(ModelConfig(**TINY))  # without the checkpoint the weights differ
    assert not torch.allclose(trainable_state_dict(fresh)["encoder.prompts.tokens"], loaded["encoder.prompts.tokens"])


def test_pipeline_checkpoint_format_and_overrides(checkpoint, tmp_path):
    path, model = checkpoint
    ds = SafetensorsCheckpointDataset(str(tmp_path / "best.safetensors"))
    ds.save({"state": trainable_state_dict(model), "metadata": checkpoint_metadata(model, {"epoch": "2"})})
    seg = load_model(tmp_path / "best.safetensors", {"upsample_mode": "bilinear"}, device="cpu")
    assert seg.config.upsample_mode == "bilinear" and seg.config.image_size == 64
    assert seg.segment(draw_grey(), ["sun"]).label_map.shape == (320, 180)
    with pytest.raises(CheckpointMismatchError, match=r"num_visual_prompts \(3 -> 5\)"):
        load_model(path, ModelConfig(**{**TINY, "num_visual_prompts": 5}), device="cpu")
    with pytest.raises(CheckpointMismatchError, match="shape mismatches"):  # conf's configuration, as asked
        load_model(path, ModelConfig(**{**TINY, "num_visual_prompts": 5}), config_from="conf", device="cpu")


def test_a_checkpoint_of_another_backbone_is_refused(tmp_path):
    """Same names and shapes, another backbone (clip_fingerprint): refused by sketchseg.api.load_model."""
    from tests.model.test_checkpoint_contract import other_backbone_checkpoint

    path = other_backbone_checkpoint(tmp_path / "other.safetensors", clip_model="sketchseg-tiny")
    with pytest.raises(CheckpointMismatchError, match=r"backbone architecture differs \(clip_fingerprint"):
        load_model(path, device="cpu")


def test_bad_checkpoints_and_inputs_raise_clear_errors(segmenter, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^checkpoint .*nope.safetensors does not exist$") as info:
        load_model(tmp_path / "nope.safetensors")  # not a mismatch: nothing was read
    assert not isinstance(info.value, CheckpointMismatchError) and isinstance(info.value, CheckpointNotFoundError)
    assert info.value.filename == str(tmp_path / "nope.safetensors") and "\n" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None
    foreign = tmp_path / "foreign.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(foreign), metadata={"format": "pt"})
    with pytest.raises(CheckpointMismatchError, match="not a sketchseg checkpoint"):
        load_model(foreign)
    with pytest.raises(SketchSegConfigError, match="no category"):
        segmenter.segment(draw_grey(), [])
    with pytest.raises(SketchSegConfigError, match="list of names"):
        segmenter.segment(draw_grey(), "tree")
    for nothing in (None, 3):  # a clear message, not a raw TypeError (issue #17)
        with pytest.raises(SketchSegConfigError, match=r"categories must be a list of category names, e\.g\. "):
            segmenter.segment(draw_grey(), nothing)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n-- truncated --")
    with pytest.raises(SketchSegDataError, match="broken.png"):
        segmenter.segment(broken, ["tree"])
    with pytest.raises(SketchSegDataError, match="shape"):
        segmenter.segment(np.zeros((4, 4, 2)), ["tree"])


def test_duplicate_and_padded_category_names_are_merged(segmenter):
    r = segmenter.segment(draw_grey(), ["sun", " sun ", "grass", "grass"])
    assert r.categories == ["sun", "grass"] and r.similarity.shape[0] == 2


def test_overlay_and_label_map_pictures(segmenter):
    image = draw_rgba()
    r = segmenter.segment(image, ["tree", "house"], isolate="tree", threshold=0.5)
    pic = overlay(r)
    assert pic.mode == "RGB" and pic.height >= 200 and pic.width > 300  # legend strip on the right
    rgb = np.asarray(pic)[:200, :300]
    paper = r.label_map == -1
    assert (rgb[paper] == 255).all()
    assert (rgb[r.label_map >= 0].min(axis=1) < 200).all()  # every ink pixel is coloured
    iso = np.asarray(overlay(r, isolated=True, legend=False))
    assert iso.shape == (200, 300, 3)
    grey_px = iso[r.ink & ~r.isolated]
    assert (grey_px == 200).all()
    labels = label_map_image(r)
    assert labels.mode == "P"
    np.testing.assert_array_equal(np.asarray(labels).astype(np.int64) - 1, r.label_map)
    plain = segmenter.segment(image, ["tree"])
    with pytest.raises(SketchSegConfigError):
        overlay(plain, isolated=True)


def test_maps_are_upsampled_one_at_a_time_as_the_model_would(segmenter):
    """The per-map upsampling of a wide sketch equals the model's own all-at-once maps, cropped."""
    from sketchseg.api import image_to_grey, model_input

    image = draw_rgba(size=(400, 90))
    cats = ["tree", "house", "sun"]
    result = segmenter.segment(image, cats, isolate="sun", threshold=0.5)
    grey, _ = image_to_grey(image)
    inp = model_input(grey, segmenter.config.image_size)
    (y0, x0), side = inp.offset, inp.canvas[0]
    assert inp.canvas == (400, 400) and (y0, x0) == (155, 0)
    pixels = torch.from_numpy(inp.pixels).expand(1, 3, -1, -1)
    full = segmenter.model.segment(pixels, [cats], size=side)[0][:, y0 : y0 + 90, x0 : x0 + 400].numpy()
    np.testing.assert_allclose(result.similarity, full, atol=1e-6)
    norm = segmenter.model.segment_normalised(pixels, [["sun"]], size=side)[0][0, y0 : y0 + 90, x0 : x0 + 400]
    np.testing.assert_array_equal(result.isolated, (norm.numpy() > 0.5) & result.ink)


def test_exif_orientation_is_applied(segmenter, tmp_path):
    """A phone photo stored landscape with 'rotate 90' in its EXIF is read as viewers show it."""
    upright = draw_grey(size=(120, 200))  # portrait, as seen
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # landscape pixels on disk
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "photo.jpg"
    stored.save(path, exif=exif, quality=95)
    result = segmenter.segment(path, ["sun", "grass"])
    assert result.label_map.shape == (200, 120) and result.image_size == (120, 200)
    with Image.open(path) as im:
        pil = segmenter.segment(im, ["sun", "grass"])
    np.testing.assert_array_equal(pil.label_map, result.label_map)


def test_sixteen_bit_arrays_are_scaled_by_their_dtype(segmenter):
    from sketchseg.api import image_to_grey

    scan = np.full((40, 40), 65535, dtype=np.uint16)  # white paper ...
    scan[15:25, 15:25] = 200  # ... and ink at 200 of 65535: nearly black
    grey, inverted = image_to_grey(scan)
    assert not inverted and grey[20, 20] == pytest.approx(200 / 65535) and grey[0, 0] == 1.0
    from sketchseg.api import _array_to_grey

    faint = np.full((4, 4), 200, dtype=np.uint16)  # a dark 16-bit image whose values stay under 256
    np.testing.assert_allclose(_array_to_grey(faint, "x"), 200 / 65535)
    plain = np.array([[0, 255], [128, 255]])  # int64 from a list: 8-bit values
    np.testing.assert_allclose(image_to_grey(plain)[0], plain / 255.0)


def test_result_prints_as_a_short_summary():
    """print(result) names size, ink and each category's share of the ink, never the arrays."""
    labels = np.full((300, 400), -1, dtype=np.int64)
    labels[0, :3] = 0    # 3 tree pixels
    labels[1, 0] = 1     # 1 dog pixel
    result = SegmentationResult(labels, ["tree", "dog"], np.zeros((2, 300, 400), np.float32),
                                ink=labels >= 0, grey=np.ones((300, 400), np.float32))
    assert str(result) == repr(result) == "SegmentationResult(400x300 px, 4 ink px: tree 75.0%, dog 25.0%)"
    result.isolated, result.isolated_category, result.threshold, result.inverted = labels == 0, "tree", 0.71, True
    assert repr(result) == ("SegmentationResult(400x300 px, 4 ink px: tree 75.0%, dog 25.0%; "
                            "isolated 'tree' above 0.71: 3 px; inverted)")


# --------------------------------------------------------------------------------------------------
# model.input_resize: how a raster sketch becomes the model's input
# --------------------------------------------------------------------------------------------------
def test_authors_resize_is_their_clip_transform_on_8_bit_rgb():
    """``authors_bicubic_rgb8``: PIL's bicubic resize of the 8-bit RGB image, stretched to S x S
    (their ``Resize((S, S), BICUBIC)``, no crop), whatever the image's size and aspect."""
    from sketchseg.api import authors_resize, model_input

    for size in [(300, 300), (500, 300), (90, 400)]:
        grey8 = np.asarray(draw_grey(size=size), dtype=np.uint8)
        theirs = np.asarray(Image.fromarray(grey8).convert("RGB").resize((64, 64), Image.Resampling.BICUBIC))
        ours = authors_resize(grey8.astype(np.float32) / 255.0, 64)
        assert ours.shape == (64, 64) and ours.dtype == np.float32
        for channel in range(3):
            np.testing.assert_array_equal(np.rint(ours * 255.0).astype(np.uint8), theirs[..., channel])
        inp = model_input(grey8.astype(np.float32) / 255.0, 64, "authors_bicubic_rgb8")
        np.testing.assert_array_equal(inp.pixels, ours)
        assert inp.canvas == grey8.shape and inp.offset == (0, 0)  # maps go back to the image itself
        lanczos = model_input(grey8.astype(np.float32) / 255.0, 64, "lanczos_float")
        assert np.abs(lanczos.pixels - ours).max() > 0.02  # the two resizes differ visibly
    same = np.asarray(draw_grey(size=(64, 64)), dtype=np.float32) / 255.0
    np.testing.assert_array_equal(authors_resize(same, 64), same)  # at the input size: as it is
    with pytest.raises(SketchSegConfigError, match="input_resize"):
        model_input(same, 64, "lanczos")


def test_lanczos_float_pads_to_a_centred_square_as_the_training_loader(tmp_path):
    from sketchseg.api import model_input
    from sketchseg.data.strokes import load_sketch_image

    im = draw_grey(size=(180, 320))
    grey = np.asarray(im, dtype=np.float32) / 255.0
    inp = model_input(grey, 64)
    assert inp.canvas == (320, 320) and inp.offset == (0, 70)
    im.save(tmp_path / "s.png")
    np.testing.assert_allclose(inp.pixels, load_sketch_image(tmp_path / "s.png", 64), atol=1e-6)


def test_authors_input_resize_maps_a_stretched_sketch_back_to_its_own_size(checkpoint):
    """Under ``authors_bicubic_rgb8`` a wide sketch is stretched to the input square; its maps are
    the model's maps upsampled to (H, W) directly (no padding to crop away)."""
    from sketchseg.api import Segmenter, authors_resize, image_to_grey

    model = build_model(ModelConfig(**{**TINY, "input_resize": "authors_bicubic_rgb8"}))
    model.load_state_dict(checkpoint[1].state_dict())
    seg = Segmenter(model, device=torch.device("cpu"))
    image = draw_rgba(size=(400, 90))
    cats = ["tree", "house", "sun"]
    result = seg.segment(image, cats, isolate="sun", threshold=0.5)
    assert result.label_map.shape == (90, 400)
    grey, _ = image_to_grey(image)
    pixels = torch.from_numpy(authors_resize(grey, 64)).expand(1, 3, -1, -1)
    full = seg.model.segment(pixels, [cats], size=(90, 400))[0].numpy()
    np.testing.assert_allclose(result.similarity, full, atol=1e-6)
    norm = seg.model.segment_normalised(pixels, [["sun"]], size=(90, 400))[0][0]
    np.testing.assert_array_equal(result.isolated, (norm.numpy() > 0.5) & result.ink)
    lanczos = Segmenter(checkpoint[1], device=torch.device("cpu")).segment(image, cats)
    assert np.abs(lanczos.similarity - result.similarity).max() > 1e-3


def test_the_authors_scoring_without_their_resize_warns(checkpoint, caplog):
    from sketchseg.api import Segmenter

    _, model = checkpoint
    cfg = model.cfg
    old = cfg.feature_normalization
    try:
        cfg.feature_normalization = "authors_test"
        with caplog.at_level("WARNING", logger="sketchseg.api"):
            Segmenter(model, device=torch.device("cpu"))
        assert "input_resize=authors_bicubic_rgb8" in caplog.text
        caplog.clear()
        cfg.input_resize = "authors_bicubic_rgb8"
        with caplog.at_level("WARNING", logger="sketchseg.api"):
            Segmenter(model, device=torch.device("cpu"))
        assert "input_resize" not in caplog.text
    finally:
        cfg.feature_normalization, cfg.input_resize = old, "lanczos_float"
