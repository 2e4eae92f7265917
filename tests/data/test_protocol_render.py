"""data.protocol_render on hand-computed cases (the authors' arrays themselves: tests/conformance)."""

from __future__ import annotations

import numpy as np
import pytest

from sketchseg.data.protocol_render import protocol_line_pixels, render_protocol
from sketchseg.data.strokes import parse_strokes


def _pixels(flat: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Flat indices -> sorted (x, y)."""
    return sorted((int(f % size), int(f // size)) for f in flat)


def _s(*xy: tuple[float, float]) -> np.ndarray:
    return np.array(xy, dtype=np.float64)


def test_a_point_is_one_pixel_dilated_by_the_cross():
    ink, stroke_map, own = render_protocol([_s((10.0, 20.0))], 512)  # 256 frame -> (20, 40)
    ys, xs = np.nonzero(ink == 0)
    assert sorted(zip(xs.tolist(), ys.tolist())) == [(19, 40), (20, 39), (20, 40), (20, 41), (21, 40)]
    assert (stroke_map[ink == 0] == 0).all() and (stroke_map[ink == 255] == -1).all()
    assert own.tolist() == [[0] * 5, sorted(y * 512 + x for x, y in [(19, 40), (20, 39), (20, 40), (20, 41), (21, 40)])]


def test_bresenham_walks_each_segment_from_its_first_point():
    # scale 1 (canvas = size): the classic integer Bresenham, minor step when the error term is >= 0
    forward, _ = protocol_line_pixels([_s((1, 1), (5, 3))], 8, canvas=8)
    assert _pixels(forward, 8) == [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)]
    backward, _ = protocol_line_pixels([_s((5, 3), (1, 1))], 8, canvas=8)
    assert _pixels(backward, 8) == [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3)]
    steep, _ = protocol_line_pixels([_s((1, 1), (2, 5))], 8, canvas=8)
    assert _pixels(steep, 8) == [(1, 1), (1, 2), (2, 3), (2, 4), (2, 5)]


def test_coordinates_are_rounded_half_to_even():
    # x * 2 at 512 px: 1.25 -> 2.5 -> 2, 1.75 -> 3.5 -> 4, 2.2 -> 4.4 -> 4
    flat, _ = protocol_line_pixels([_s((1.25, 10)), _s((1.75, 20)), _s((2.2, 30))], 512)
    assert _pixels(flat, 512) == [(2, 20), (4, 40), (4, 60)]


def test_pixels_on_or_beyond_the_frame_edge_are_dropped():
    # a stroke along the first column, a point on the far edge, a point outside: no pixel at all;
    # a segment that leaves the frame keeps its inside part
    flat, stroke = protocol_line_pixels([_s((0, 10), (0, 200)), _s((256, 100)), _s((-5, -5)),
                                         _s((1, 1), (-3, 1))], 512)
    assert set(stroke.tolist()) == {3}
    assert _pixels(flat, 512) == [(1, 2), (2, 2)]
    ink, _, own = render_protocol([_s((0, 10), (0, 200)), _s((1, 1))], 512)
    assert set(own[0].tolist()) == {1}  # the first stroke renders to no pixel
    assert int((ink == 0).sum()) == 5


def test_dilation_is_per_stroke_and_order_decides_the_owner():
    a, b = _s((10, 10)), _s((11, 10))  # pixels (20, 20) and (22, 20): crosses touch at (21, 20)
    ink, first, own = render_protocol([a, b], 512)
    _, second, _ = render_protocol([a, b], 512, order=[1, 0])
    assert first[20, 21] == 0 and second[20, 21] == 1
    shared = 20 * 512 + 21
    assert {int(s) for s, p in own.T if p == shared} == {0, 1}  # both strokes own the shared pixel
    assert int((ink == 0).sum()) == 9
    with pytest.raises(ValueError, match="permutation"):
        render_protocol([a, b], 512, order=[0, 0])


def test_unclamped_parse_keeps_coordinates_as_drawn():
    arr = np.array([[-10.0, 300.0, 0.0], [12.25, 5.5, 1.0]])
    assert parse_strokes(arr, clamp=False)[0].tolist() == [[-10.0, 300.0], [12.25, 5.5]]
    clamped = parse_strokes(arr)[0]
    assert clamped[0, 0] == 0.0 and clamped[0, 1] < 256.0
