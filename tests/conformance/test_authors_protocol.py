"""The evaluation protocol, pixel for pixel: sketchseg against arrays made by the authors' own code.

The fixtures (``fixtures/authors_rendering.npz``, ``fixtures/authors_metrics.npz``; how they were
made: ``README.md``) hold 26 sketches (generated scenes, scenes crossing the frame, hand-made edge
cases), what the authors' evaluation functions render from them (ink, 1-px lines, every stroke's
own pixels, ground truth, the 224-px model input) and their per-sketch mIoU / Acc@P / Acc@S for
four seeded predictions. Every sketch goes through sketchseg's evaluation path itself
(``AnnotatedSketches``: vector file -> render -> ground truth -> model input) and
``engine.metrics.sketch_metrics``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sketchseg.data.annotated import AnnotatedSketches
from sketchseg.data.protocol_render import protocol_line_pixels
from sketchseg.data.strokes import parse_strokes
from sketchseg.engine.metrics import sketch_metrics

FIXTURES = Path(__file__).parent / "fixtures"
RENDERING = np.load(FIXTURES / "authors_rendering.npz")
METRICS = np.load(FIXTURES / "authors_metrics.npz")
SIDE = int(RENDERING["side"])
NAMES = [str(n) for n in RENDERING["names"]]
ALL_CLASSES = [str(c) for c in RENDERING["all_classes"]]  # blank_pixel first, then the release's order
GLOBAL = {c: k for k, c in enumerate(ALL_CLASSES)}


def _part(key: str, offsets: str, k: int) -> np.ndarray:
    off = RENDERING[offsets]
    return RENDERING[key][..., off[k]: off[k + 1]] if RENDERING[key].ndim == 2 and key == "stroke_pixels" \
        else RENDERING[key][off[k]: off[k + 1]]


def _unpack(key: str, k: int) -> np.ndarray:
    return np.unpackbits(RENDERING[key][k], axis=-1, count=SIDE).astype(bool)


@pytest.fixture(scope="module")
def sketches(tmp_path_factory) -> AnnotatedSketches:
    """The fixture's sketches as FS-COCO-seg files, through sketchseg's evaluation dataset."""
    root = tmp_path_factory.mktemp("authors_protocol")
    rows = []
    for k, name in enumerate(NAMES):
        path = root / f"{name}.npy"
        np.save(path, _part("vectors", "vector_offsets", k))
        labels = [str(x) for x in _part("labels", "label_offsets", k)]
        rows.append({"sketch_id": k, "vector_path": str(path), "labels_json": json.dumps(labels),
                     "labels_path": f"{name}.json"})
    return AnnotatedSketches(pd.DataFrame(rows), image_size=224, render_size=SIDE, class_order=ALL_CLASSES[1:])


def _global(local: np.ndarray, categories: list[str]) -> np.ndarray:
    """Local category indices (-1 background) -> ``all_classes`` indices (0 background)."""
    lut = np.array([0] + [GLOBAL[c] for c in categories], dtype=np.int64)
    return lut[np.asarray(local, dtype=np.int64) + 1]


def test_the_fixtures_are_the_authors():
    assert str(RENDERING["source"]).endswith("Scene-Sketch-Segmentation@af751b14363211ebde2a920505ed1642e9b846ad")
    assert len(NAMES) >= 20 and SIDE == 512


@pytest.mark.parametrize("k", range(len(NAMES)), ids=NAMES)
def test_rendering_equals_the_authors(sketches, k):
    s = sketches[k]
    assert len(s.stroke_labels) == int(RENDERING["n_strokes"][k])
    # 1-px Bresenham lines (rounded coordinates, pixels on or beyond the frame's edge dropped)
    vec = _part("vectors", "vector_offsets", k)
    flat, _ = protocol_line_pixels(parse_strokes(vec, clamp=False, open_tail=False)[: len(s.stroke_labels)], SIDE)
    lines = np.zeros(SIDE * SIDE, dtype=bool)
    lines[flat] = True
    np.testing.assert_array_equal(lines.reshape(SIDE, SIDE), _unpack("lines", k), err_msg="1-px lines")
    # the ink (cross-dilated strokes), i.e. the pixels that exist and are scored
    np.testing.assert_array_equal(s.stroke_map >= 0, _unpack("ink", k), err_msg="ink")
    # every stroke's own pixels (what Acc@S votes over)
    np.testing.assert_array_equal(s.stroke_pixels, _part("stroke_pixels", "stroke_pixel_offsets", k),
                                  err_msg="stroke pixels")
    # ground truth at overlapping strokes: most covering strokes, ties alphabetical
    np.testing.assert_array_equal(_global(s.gt, s.categories), RENDERING["gt"][k], err_msg="ground truth")
    # the model's input: the render resized to 224 px, bicubic
    image = np.rint(s.image[0].numpy() * 255.0).astype(np.uint8)
    np.testing.assert_array_equal(image, RENDERING["model_input_224"][k], err_msg="model input")


@pytest.mark.parametrize("kind", range(len(METRICS["pred_kinds"])), ids=[str(x) for x in METRICS["pred_kinds"]])
def test_per_sketch_metrics_equal_the_authors(sketches, kind):
    names = [str(n) for n in METRICS["metric_names"]]
    assert names == ["miou", "pixel_acc", "stroke_acc"]
    off = METRICS["scored_offsets"]
    for k in range(len(NAMES)):
        s = sketches[k]
        gt_global = _global(s.gt, s.categories)
        scored = np.flatnonzero(gt_global.reshape(-1) != 0)
        pred_global = np.zeros(SIDE * SIDE, dtype=np.int64)
        pred_global[scored] = METRICS["pred_on_scored"][kind, off[k]: off[k + 1]]
        # the sketch's categories and any other predicted one, in all_classes order (their tie rule)
        cats = sorted(set(s.categories) | {ALL_CLASSES[c] for c in np.unique(pred_global[scored])},
                      key=GLOBAL.__getitem__)
        to_local = {GLOBAL[c]: i for i, c in enumerate(cats)}
        lut = np.zeros(len(ALL_CLASSES), dtype=np.int64)
        for g, i in to_local.items():
            lut[g] = i
        pred = lut[pred_global].reshape(SIDE, SIDE)
        gt = np.where(gt_global > 0, lut[gt_global], -1)
        stroke_labels = np.array([to_local[GLOBAL[s.categories[j]]] for j in s.stroke_labels], dtype=np.int64)
        got = sketch_metrics(pred, gt, s.stroke_map, stroke_labels, n_categories=len(cats),
                             stroke_pixels=s.stroke_pixels)
        want = METRICS["metrics"][k, kind]
        assert got.miou == pytest.approx(want[0], abs=1e-6), f"{NAMES[k]}: mIoU"
        assert got.pixel_acc == pytest.approx(want[1], abs=1e-12), f"{NAMES[k]}: Acc@P"
        assert got.stroke_acc == pytest.approx(want[2], abs=1e-12), f"{NAMES[k]}: Acc@S"
