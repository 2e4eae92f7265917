"""Vector sketch parsing, rendering and raster loading (sketchseg.data.strokes)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sketchseg.data.strokes import (
    image_info,
    load_sketch_image,
    load_vector_array,
    load_vector_sketch,
    parse_strokes,
    render_labelled_strokes,
    render_strokes,
    stroke_pixels,
)
from sketchseg.errors import SketchSegDataError


# ----------------------------------------------------------------------------------------- parsing
def test_flags_all_zero_is_one_stroke():
    arr = np.array([[1, 2, 0], [3, 4, 0], [5, 6, 0]], dtype=np.float32)
    strokes = parse_strokes(arr)
    assert len(strokes) == 1
    np.testing.assert_array_equal(strokes[0], [[1, 2], [3, 4], [5, 6]])


def test_flag_one_ends_a_stroke_and_trailing_run_is_last_stroke():
    arr = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 0], [3, 3, 0]], dtype=np.float64)
    strokes = parse_strokes(arr)
    assert [len(s) for s in strokes] == [2, 2]
    np.testing.assert_array_equal(strokes[1], [[2, 2], [3, 3]])


def test_consecutive_ones_are_single_point_strokes():
    arr = np.array([[1, 1, 1], [2, 2, 1], [3, 3, 0], [4, 4, 1]], dtype=np.float32)
    strokes = parse_strokes(arr)
    assert [len(s) for s in strokes] == [1, 1, 2]
    np.testing.assert_array_equal(strokes[0], [[1, 1]])


def test_int_dtype_gives_float32_strokes():
    arr = np.array([[10, 20, 0], [30, 40, 1]], dtype=np.int64)
    strokes = parse_strokes(arr)
    assert strokes[0].dtype == np.float32 and strokes[0].shape == (2, 2)
    np.testing.assert_array_equal(strokes[0], [[10, 20], [30, 40]])


def test_coordinates_are_clamped_into_the_canvas():
    arr = np.array([[-5, 300, 0], [256, 255.5, 1]], dtype=np.float32)
    (s,) = parse_strokes(arr)
    assert s.min() >= 0.0 and s.max() < 256.0
    assert s[0, 0] == 0.0 and s[0, 1] > 255.9 and s[1, 1] == 255.5


@pytest.mark.parametrize(
    ("arr", "needle"),
    [
        (np.zeros((4, 2), np.float32), "shape"),
        (np.zeros((3,), np.float32), "shape"),
        (np.array([[1, 2, 0], [np.nan, 2, 1]], np.float32), "non-finite"),
        (np.array([[1, 2, 0], [np.inf, 2, 1]], np.float32), "non-finite"),
        (np.zeros((0, 3), np.float32), "empty"),
        (np.array([[1, 2, 0]], dtype=object), "dtype"),
    ],
)
def test_bad_arrays_raise_naming_the_source(arr, needle):
    with pytest.raises(SketchSegDataError, match=needle) as err:
        parse_strokes(arr, source="sk/7/000000000042.npy")
    assert "sk/7/000000000042.npy" in str(err.value)


def test_load_vector_sketch_refuses_pickled_object_arrays(tmp_path: Path):
    p = tmp_path / "obj.npy"
    np.save(p, np.array([[1, 2], [3]], dtype=object), allow_pickle=True)
    with pytest.raises(SketchSegDataError, match="obj.npy"):
        load_vector_sketch(p)


def test_load_vector_sketch_roundtrip(tmp_path: Path):
    p = tmp_path / "v.npy"
    np.save(p, np.array([[1, 2, 0], [3, 4, 1], [5, 6, 1]], np.float32))
    assert [len(s) for s in load_vector_sketch(p)] == [2, 1]


# --------------------------------------------------------------------------------------- rendering
def _stroke(*pts):
    return np.array(pts, dtype=np.float32)


def test_horizontal_line_dilated_exactly():
    ink, sm = render_strokes([_stroke((2, 5), (6, 5))], 16, canvas=16)
    expected = np.zeros((16, 16), bool)
    expected[4:7, 1:8] = True  # columns 2..6 of row 5, grown by one pixel each side
    np.testing.assert_array_equal(sm >= 0, expected)
    np.testing.assert_array_equal(ink == 0, expected)
    assert set(np.unique(sm)) == {-1, 0}


def test_thickness_one_is_the_bare_line_and_scaling_applies():
    _, sm = render_strokes([_stroke((2, 5), (6, 5))], 32, canvas=16, thickness=1)
    ys, xs = np.nonzero(sm >= 0)
    assert set(ys.tolist()) == {10}
    assert xs.min() == 4 and xs.max() == 12 and len(xs) == 9


def test_single_point_stroke_draws_one_pixel():
    _, sm = render_strokes([_stroke((3, 4))], 8, canvas=8, thickness=1)
    assert (sm >= 0).sum() == 1 and sm[4, 3] == 0
    _, sm3 = render_strokes([_stroke((3, 4))], 8, canvas=8, thickness=3)
    assert (sm3 >= 0).sum() == 9 and (sm3[3:6, 2:5] == 0).all()


def test_diagonal_line_is_connected_and_minimal():
    _, sm = render_strokes([_stroke((0, 0), (9, 4))], 16, canvas=16, thickness=1)
    ys, xs = np.nonzero(sm >= 0)
    assert len(xs) == 10 and sorted(xs.tolist()) == list(range(10))
    order = np.argsort(xs)
    assert np.abs(np.diff(ys[order])).max() <= 1


def test_overlap_first_stroke_wins_and_order_overrides():
    h = _stroke((2, 8), (14, 8))
    v = _stroke((8, 2), (8, 14))
    _, sm = render_strokes([h, v], 17, canvas=17)
    assert sm[8, 8] == 0
    _, sm2 = render_strokes([h, v], 17, canvas=17, order=[1, 0])
    assert sm2[8, 8] == 1


def test_dilation_respects_order_exactly():
    rng = np.random.default_rng(3)
    strokes = [rng.uniform(0, 64, (6, 2)).astype(np.float32) for _ in range(5)]
    order = [3, 0, 4, 1, 2]
    _, sm = render_strokes(strokes, 64, canvas=64, order=order)
    masks = [render_strokes([s], 64, canvas=64)[1] >= 0 for s in strokes]
    taken = np.zeros((64, 64), bool)
    for i in order:
        np.testing.assert_array_equal(sm == i, masks[i] & ~taken)
        taken |= masks[i]
    np.testing.assert_array_equal(sm >= 0, taken)


def test_stroke_pixels_are_each_stroke_drawn_alone():
    rng = np.random.default_rng(5)
    strokes = [rng.uniform(0, 64, (5, 2)).astype(np.float32) for _ in range(4)] + [np.array([[3.0, 60.0]], np.float32)]
    for k in (1, 2, 3):
        own = stroke_pixels(strokes, 64, canvas=64, thickness=k)
        assert own.shape[0] == 2 and own.dtype == np.int64
        for i, s in enumerate(strokes):
            alone = render_strokes([s], 64, canvas=64, thickness=k)[1] >= 0
            np.testing.assert_array_equal(np.sort(own[1][own[0] == i]), np.flatnonzero(alone))
        ink, sm = render_strokes(strokes, 64, canvas=64, thickness=k)
        np.testing.assert_array_equal(np.unique(own[1]), np.flatnonzero(sm.reshape(-1) >= 0))
    # the lone point at (3, 60) scaled 2x into a 128 frame -> pixel (6, 120), dilated 3x3
    lone = stroke_pixels([strokes[-1]], 128, canvas=64, thickness=3)
    ys, xs = np.divmod(lone[1], 128)
    assert sorted(set(ys)) == [119, 120, 121] and sorted(set(xs)) == [5, 6, 7] and lone.shape[1] == 9
    assert stroke_pixels([], 32).shape == (2, 0)


def test_render_labelled_strokes_is_render_and_stroke_pixels_in_one():
    rng = np.random.default_rng(8)
    strokes = [rng.uniform(0, 64, (6, 2)).astype(np.float32) for _ in range(5)]
    order = [3, 0, 4, 1, 2]
    ink, sm, own = render_labelled_strokes(strokes, 96, canvas=64, thickness=3, order=order)
    ink2, sm2 = render_strokes(strokes, 96, canvas=64, thickness=3, order=order)
    np.testing.assert_array_equal(ink, ink2)
    np.testing.assert_array_equal(sm, sm2)
    np.testing.assert_array_equal(own, stroke_pixels(strokes, 96, canvas=64, thickness=3))
    with pytest.raises(ValueError, match="permutation"):
        render_labelled_strokes(strokes, 96, order=[0, 1])
    with pytest.raises(ValueError, match="thickness"):
        render_labelled_strokes(strokes, 96, thickness=0)


def test_load_vector_array_reads_once_and_parses_both_ways(tmp_path):
    arr = np.array([[1, 1, 0], [2, 2, 1], [5, 5, 0], [6, 6, 0]], dtype=np.float32)  # closed stroke + open run
    path = tmp_path / "s.npy"
    np.save(path, arr)
    raw = load_vector_array(path)
    np.testing.assert_array_equal(raw, arr)
    assert len(parse_strokes(raw)) == 2 and len(parse_strokes(raw, open_tail=False)) == 1
    with pytest.raises(SketchSegDataError, match="missing.npy: vector sketch file not found"):
        load_vector_array(tmp_path / "missing.npy")


def test_outputs_types_sizes_and_consistency():
    rng = np.random.default_rng(0)
    strokes = [np.cumsum(rng.normal(0, 4, (20, 2)), axis=0).astype(np.float32) + 128 for _ in range(10)]
    ink, sm = render_strokes(strokes, 100)
    assert ink.shape == sm.shape == (100, 100)
    assert ink.dtype == np.uint8 and sm.dtype == np.int32
    assert set(np.unique(ink)) <= {0, 255}
    np.testing.assert_array_equal(ink == 0, sm >= 0)
    assert sm.min() == -1 and sm.max() <= 9


def test_empty_stroke_list_and_bad_order():
    ink, sm = render_strokes([], 8)
    assert (ink == 255).all() and (sm == -1).all()
    with pytest.raises(ValueError, match="permutation"):
        render_strokes([_stroke((1, 1)), _stroke((2, 2))], 8, order=[0, 0])


def test_render_is_fast():
    rng = np.random.default_rng(1)
    strokes = [np.cumsum(rng.normal(0, 3, (30, 2)), axis=0).astype(np.float32) + 128 for _ in range(60)]
    render_strokes(strokes, 512)
    t0 = time.perf_counter()
    for _ in range(20):
        render_strokes(strokes, 512)
    assert (time.perf_counter() - t0) / 20 < 0.025  # a few ms; generous bound for slow CI machines


# ---------------------------------------------------------------------------------- raster loading
def _line_image(w: int = 40, h: int = 40) -> np.ndarray:
    a = np.full((h, w), 255, np.uint8)
    a[h // 2 - 1 : h // 2 + 1, 5 : w - 5] = 0
    return a


def test_load_l_png(tmp_path: Path):
    p = tmp_path / "a.png"
    Image.fromarray(_line_image()).save(p)
    img = load_sketch_image(p, 40)
    assert img.dtype == np.float32 and img.shape == (40, 40)
    assert img[0, 0] == 1.0 and img[20, 20] == 0.0


def test_load_rgba_composites_on_white(tmp_path: Path):
    rgba = np.zeros((40, 40, 4), np.uint8)  # fully transparent black ...
    rgba[19:21, 5:35] = (0, 0, 0, 255)  # ... except an opaque black line
    p = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(p)
    img = load_sketch_image(p, 40)
    assert img[0, 0] == pytest.approx(1.0) and img[20, 20] == pytest.approx(0.0)
    assert image_info(p) == {"width": 40, "height": 40, "mode": "RGBA", "inverted": False}


def test_load_palette_with_transparency(tmp_path: Path):
    im = Image.fromarray(_line_image()).convert("P")
    p = tmp_path / "p.png"
    im.save(p, transparency=255)  # palette index of white ... whatever it is, it becomes transparent
    img = load_sketch_image(p, 40)
    assert img[0, 0] == pytest.approx(1.0) and img[20, 20] == pytest.approx(0.0)


def test_load_i16(tmp_path: Path):
    a = _line_image().astype(np.uint16) * 257
    p = tmp_path / "i16.png"
    Image.fromarray(a).save(p)
    assert Image.open(p).mode.startswith("I")
    img = load_sketch_image(p, 40)
    assert img[0, 0] == pytest.approx(1.0) and img[20, 20] == pytest.approx(0.0)


def test_inverted_sketch_is_detected_and_flipped(tmp_path: Path, caplog):
    p = tmp_path / "inv.jpg"
    Image.fromarray(255 - _line_image()).convert("RGB").save(p, quality=95)
    assert image_info(p)["inverted"] is True
    with caplog.at_level(logging.WARNING, logger="sketchseg.data.strokes"):
        img = load_sketch_image(p, 40)
    assert "inverted" in caplog.text and "inv.jpg" in caplog.text
    assert img[0, 0] > 0.95 and img[20, 20] < 0.1


def test_non_square_is_padded_white_and_centred(tmp_path: Path):
    a = np.zeros((20, 40), np.uint8)  # a black 40x20 block with a white border pixel ring
    a[0, :] = a[-1, :] = 255
    a[:, 0] = a[:, -1] = 255
    p = tmp_path / "wide.png"
    Image.fromarray(a).save(p)
    img = load_sketch_image(p, 20)
    assert img.shape == (20, 20)
    assert img[:3].min() > 0.9 and img[-3:].min() > 0.9  # padding above and below is white
    assert img[10, 10] < 0.1  # content centred


def test_truncated_jpeg_raises_naming_the_file(tmp_path: Path):
    rng = np.random.default_rng(0)
    p = tmp_path / "broken.jpg"
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(p, quality=95)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(SketchSegDataError, match="broken.jpg") as err:
        load_sketch_image(p, 32)
    assert "unreadable image" in str(err.value)
    with pytest.raises(SketchSegDataError, match="broken.jpg"):
        image_info(p)


def test_not_an_image_raises(tmp_path: Path):
    p = tmp_path / "text.jpg"
    p.write_text("hello")
    with pytest.raises(SketchSegDataError, match="text.jpg"):
        load_sketch_image(p, 32)
