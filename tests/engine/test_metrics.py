"""Per-sketch metrics on tiny hand-made label maps (values computed by hand)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from sketchseg.errors import SketchSegDataError
from sketchseg.data.ground_truth import gt_label_map
from sketchseg.engine.metrics import (
    SketchScores,
    aggregate,
    per_category_table,
    sketch_metrics,
)

# 2x4 sketch, 3 strokes: stroke 0 (class 0) = (0,0),(0,1); stroke 1 (class 0) = (0,2);
# stroke 2 (class 1) = (0,3),(1,0),(1,1); (1,2),(1,3) background.
STROKE_MAP = np.array([[0, 0, 1, 2], [2, 2, -1, -1]])
STROKE_LABELS = np.array([0, 0, 1])
GT = np.array([[0, 0, 0, 1], [1, 1, -1, -1]])
# background pixels hold junk (7, -3): they must be ignored
PRED = np.array([[0, 0, 1, 1], [1, 0, 7, -3]])


def _basic() -> SketchScores:
    return sketch_metrics(PRED, GT, STROKE_MAP, STROKE_LABELS, n_categories=2)


def test_gt_label_map() -> None:
    np.testing.assert_array_equal(gt_label_map(STROKE_MAP, STROKE_LABELS), GT)
    # unlabelled stroke (-1) is background
    np.testing.assert_array_equal(
        gt_label_map(STROKE_MAP, np.array([0, -1, 1])), np.array([[0, 0, -1, 1], [1, 1, -1, -1]])
    )
    with pytest.raises(SketchSegDataError, match="stroke labels"):
        gt_label_map(STROKE_MAP, np.array([0, 0]))


def test_basic_overlap() -> None:
    s = _basic()
    # 6 stroke pixels, 4 right
    assert s.n_pixels == 6
    assert s.pixel_acc == pytest.approx(4 / 6)
    # class 0: gt 3, pred 3, inter 2, union 4; class 1 likewise
    np.testing.assert_array_equal(s.intersection, [2, 2])
    np.testing.assert_array_equal(s.union, [4, 4])
    np.testing.assert_array_equal(s.gt_pixels, [3, 3])
    np.testing.assert_array_equal(s.pred_pixels, [3, 3])
    np.testing.assert_array_equal(s.correct, [2, 2])
    assert s.miou == pytest.approx(0.5)
    assert s.mean_acc == pytest.approx(2 / 3)
    assert s.fwiou == pytest.approx(0.5)
    # stroke 0 -> 0 (right), stroke 1 -> 1 (wrong), stroke 2 votes 1,1,0 -> 1 (right)
    assert s.stroke_acc == pytest.approx(2 / 3)
    assert (s.n_strokes, s.n_strokes_hidden) == (3, 0)


def test_background_prediction_is_not_counted() -> None:
    pred = PRED.copy()
    pred[1, 2:] = 1  # predicting class 1 on background changes nothing
    s = sketch_metrics(pred, GT, STROKE_MAP, STROKE_LABELS, n_categories=2)
    np.testing.assert_array_equal(s.pred_pixels, [3, 3])
    assert s.miou == pytest.approx(0.5) and s.pixel_acc == pytest.approx(4 / 6)


def test_stroke_majority_tie_goes_to_lowest_index() -> None:
    smap = np.array([[0, 0, 0, 0]])
    pred = np.array([[2, 1, 1, 2]])  # votes: class 1 x2, class 2 x2 -> class 1
    gt = np.array([[1, 1, 1, 1]])
    right = sketch_metrics(pred, gt, smap, np.array([1]), n_categories=3)
    assert right.stroke_acc == 1.0
    gt2 = np.array([[2, 2, 2, 2]])
    wrong = sketch_metrics(pred, gt2, smap, np.array([2]), n_categories=3)
    assert wrong.stroke_acc == 0.0
    assert wrong.pixel_acc == pytest.approx(0.5)


def test_hidden_strokes_are_not_scored() -> None:
    labels = np.array([0, 0, 1, 1])  # stroke 3 has no visible pixel
    s = sketch_metrics(PRED, GT, STROKE_MAP, labels, n_categories=2)
    assert (s.n_strokes, s.n_strokes_hidden) == (3, 1)
    assert s.stroke_acc == pytest.approx(2 / 3)


def test_stroke_votes_over_its_own_pixels_also_under_other_strokes() -> None:
    """The protocol: correct strokes / total strokes, each voting over its own pixels. Stroke 1
    (class 1) retraces stroke 0 (class 0) exactly, so it owns no pixel of the stroke map; every
    pixel is predicted 0: stroke 0 right, stroke 1 wrong -> Acc@S 1/2 (owned pixels would say 1/1)."""
    smap = np.array([[0, 0, 0]])
    gt = np.array([[0, 0, 0]])
    pred = np.array([[0, 0, 0]])
    labels = np.array([0, 1])
    own = np.array([[0, 0, 0, 1, 1, 1], [0, 1, 2, 0, 1, 2]])  # (stroke, flat pixel)
    s = sketch_metrics(pred, gt, smap, labels, n_categories=2, stroke_pixels=own)
    assert (s.stroke_acc, s.n_strokes, s.n_strokes_hidden) == (0.5, 2, 1)
    assert sketch_metrics(pred, gt, smap, labels, n_categories=2).stroke_acc == 1.0  # the owned-pixel fallback
    # a stroke partly under another: stroke 1 = pixels 1..2 (pixel 1 owned by stroke 0), predictions 1, 1
    pred2 = np.array([[0, 1, 1]])
    own2 = np.array([[0, 0, 1, 1], [0, 1, 1, 2]])
    s2 = sketch_metrics(pred2, np.array([[0, 0, 1]]), np.array([[0, 0, 1]]), labels, n_categories=2, stroke_pixels=own2)
    # stroke 0 votes over pixels 0, 1 -> {0: 1, 1: 1} -> tie -> 0 (right); stroke 1 over 1, 2 -> 1 (right)
    assert s2.stroke_acc == 1.0
    with pytest.raises(SketchSegDataError, match="stroke_pixels"):
        sketch_metrics(pred, gt, smap, labels, n_categories=2, stroke_pixels=np.array([[2], [0]]))


def test_class_absent_from_prediction() -> None:
    gt = np.array([[0, 0, 1, 1, 2, 2]])
    pred = np.array([[0, 0, 1, 1, 1, 1]])
    smap = np.array([[0, 0, 1, 1, 2, 2]])
    s = sketch_metrics(pred, gt, smap, np.array([0, 1, 2]), n_categories=3)
    # IoU: class 0 = 2/2, class 1 = 2/4, class 2 = 0/2 (counts)
    assert s.miou == pytest.approx((1 + 0.5 + 0) / 3)
    assert s.pixel_acc == pytest.approx(4 / 6)
    assert s.mean_acc == pytest.approx((1 + 1 + 0) / 3)
    assert s.fwiou == pytest.approx(2 / 6 * 1 + 2 / 6 * 0.5 + 2 / 6 * 0)
    assert s.stroke_acc == pytest.approx(2 / 3)  # stroke 2 voted class 1


def test_class_predicted_but_absent_from_gt() -> None:
    gt = np.array([[0, 0, 0, 0]])
    pred = np.array([[0, 0, 0, 1]])
    smap = np.array([[0, 0, 0, 0]])
    s = sketch_metrics(pred, gt, smap, np.array([0]), n_categories=2)
    # class 0: inter 3, union 4; class 1: inter 0, union 1 -> IoU 0, counted in mIoU
    assert s.miou == pytest.approx((0.75 + 0.0) / 2)
    assert s.mean_acc == pytest.approx(0.75)  # only gt classes
    assert s.fwiou == pytest.approx(0.75)
    # a third class with empty union is left out of the mean
    s3 = sketch_metrics(pred, gt, smap, np.array([0]), n_categories=3)
    assert s3.miou == pytest.approx(0.375)
    np.testing.assert_array_equal(s3.union, [4, 1, 0])


def test_mean_acc_and_fwiou_unequal_frequencies() -> None:
    gt = np.array([[0, 0, 0, 0, 0, 0, 1, 1]])
    pred = np.array([[0, 0, 0, 0, 0, 1, 1, 0]])
    smap = np.array([[0, 0, 0, 0, 0, 0, 1, 1]])
    s = sketch_metrics(pred, gt, smap, np.array([0, 1]), n_categories=2)
    # class 0: gt 6, pred 6, inter 5, union 7; class 1: gt 2, pred 2, inter 1, union 3
    assert s.pixel_acc == pytest.approx(6 / 8)
    assert s.mean_acc == pytest.approx((5 / 6 + 1 / 2) / 2)
    assert s.miou == pytest.approx((5 / 7 + 1 / 3) / 2)
    assert s.fwiou == pytest.approx(6 / 8 * 5 / 7 + 2 / 8 * 1 / 3)
    # stroke 1 votes class 1 once, class 0 once -> tie -> class 0 -> wrong
    assert s.stroke_acc == pytest.approx(0.5)


def test_aggregate_is_per_sketch_not_pooled() -> None:
    a = sketch_metrics(np.array([[0]]), np.array([[0]]), np.array([[0]]), np.array([0]), n_categories=1)
    gt_b = np.zeros((3, 3), dtype=int)
    pred_b = np.ones((3, 3), dtype=int)
    b = sketch_metrics(pred_b, gt_b, np.zeros((3, 3), dtype=int), np.array([0]), n_categories=2)
    assert (a.pixel_acc, b.pixel_acc) == (1.0, 0.0)
    agg = aggregate([a, b])
    assert agg["pixel_acc"] == pytest.approx(50.0)  # pooled would be 10 %
    assert agg["stroke_acc"] == pytest.approx(50.0)
    assert agg["miou"] == pytest.approx(50.0)
    assert agg["mean_acc"] == pytest.approx(50.0)
    assert agg["fwiou"] == pytest.approx(50.0)
    assert agg["n_sketches"] == 2


def test_aggregate_skips_undefined_and_rejects_empty() -> None:
    empty = sketch_metrics(np.zeros((2, 2), int), np.full((2, 2), -1), np.full((2, 2), -1), np.array([0]), 1)
    assert np.isnan(empty.pixel_acc) and empty.n_strokes_hidden == 1
    agg = aggregate([_basic(), empty])
    assert agg["pixel_acc"] == pytest.approx(100 * 4 / 6)
    with pytest.raises(SketchSegDataError):
        aggregate([])


def test_per_category_table() -> None:
    first = _basic()  # classes tree (0), car (1)
    second = sketch_metrics(  # classes car (0), dog (1): car 3/4 right, dog predicted once
        np.array([[0, 0, 0, 1]]), np.array([[0, 0, 0, 0]]), np.array([[0, 0, 0, 0]]), np.array([0]), n_categories=2
    )
    table = per_category_table([(["tree", "car"], first), (["car", "dog"], second)])
    assert list(table.columns) == ["category", "n_sketches", "gt_pixels", "pixel_acc", "iou"]
    assert table["category"].tolist() == ["car", "tree", "dog"]
    assert table["n_sketches"].tolist() == [2, 1, 0]
    assert table["gt_pixels"].tolist() == [7, 3, 0]
    np.testing.assert_allclose(table["pixel_acc"].to_numpy()[:2], [5 / 7, 2 / 3])
    assert np.isnan(table["pixel_acc"].iloc[2])
    np.testing.assert_allclose(table["iou"].to_numpy(), [5 / 8, 2 / 4, 0.0])
    with pytest.raises(SketchSegDataError, match="class names"):
        per_category_table([(["tree"], first)])


def test_input_validation() -> None:
    with pytest.raises(SketchSegDataError, match="shape"):
        sketch_metrics(PRED[:, :3], GT, STROKE_MAP, STROKE_LABELS, n_categories=2)
    bad = PRED.copy()
    bad[0, 0] = 5  # out of range on a stroke pixel
    with pytest.raises(SketchSegDataError, match="pred"):
        sketch_metrics(bad, GT, STROKE_MAP, STROKE_LABELS, n_categories=2)
    with pytest.raises(SketchSegDataError, match="gt"):
        sketch_metrics(PRED, GT + 5, STROKE_MAP, STROKE_LABELS, n_categories=2)


def test_fast_on_512() -> None:
    rng = np.random.default_rng(0)
    n_strokes, n_classes = 300, 12
    smap = rng.integers(-1, n_strokes, size=(512, 512))
    labels = rng.integers(0, n_classes, size=n_strokes)
    gt = gt_label_map(smap, labels)
    pred = rng.integers(0, n_classes, size=(512, 512))
    start = time.perf_counter()
    s = sketch_metrics(pred, gt, smap, labels, n_classes)
    assert time.perf_counter() - start < 1.0
    assert s.n_pixels == int((smap >= 0).sum())
    # cross-check Acc@P and the confusion against a direct computation
    mask = gt >= 0
    assert s.pixel_acc == pytest.approx(float((pred[mask] == gt[mask]).mean()))
    c = 3
    inter = int(((pred == c) & (gt == c)).sum())
    union = int((((pred == c) & mask) | (gt == c)).sum())
    assert (s.intersection[c], s.union[c]) == (inter, union)


def test_mean_acc_and_fwiou_are_per_category_over_the_set() -> None:
    """S2.3.1 by hand. Sketch 1 (tree, house): 100 tree px right, 10 house px labelled tree.
    Sketch 2 (tree, dog): 10 tree px labelled dog, 10 dog px right."""
    from sketchseg.engine.metrics import class_pooled_metrics

    gt1 = np.array([[0] * 100 + [1] * 10])
    one = sketch_metrics(np.zeros_like(gt1), gt1, np.zeros_like(gt1), np.array([0]), n_categories=2)
    gt2 = np.array([[0] * 10 + [1] * 10])
    two = sketch_metrics(np.ones_like(gt2), gt2, np.zeros_like(gt2), np.array([0]), n_categories=2)
    table = per_category_table([(["tree", "house"], one), (["tree", "dog"], two)])
    got = class_pooled_metrics(table)
    # accuracy: tree 100/110, house 0/10, dog 10/10 -> mean 63.64 (per sketch: (50 + 50) / 2 = 50)
    assert got["mean_acc"] == pytest.approx(100 * (100 / 110 + 0 + 1) / 3)
    # IoU: tree 100 / (110 + 110 - 100), house 0 / 10, dog 10 / (10 + 20 - 10); weights 110, 10, 10 of 130
    assert got["fwiou"] == pytest.approx(100 * (110 * 100 / 120 + 10 * 0 + 10 * 0.5) / 130)
    assert aggregate([one, two])["mean_acc"] == pytest.approx(50.0)  # the per-sketch reading differs
    assert np.isnan(class_pooled_metrics(pd.DataFrame())["fwiou"])


@pytest.mark.parametrize("empty_label", [0, 1])
def test_a_stroke_with_no_pixel_counts_wrong_in_acc_s(empty_label):
    """The protocol: a stroke that renders to no pixel votes "blank", never its label (even label 0,
    which an all-zero vote would pick); ``empty_strokes="skip"`` leaves it out."""
    gt = np.array([[0, 0, 0, -1]])
    pred = np.array([[0, 0, 0, 0]])
    smap = np.array([[0, 0, 0, -1]])
    labels = np.array([0, empty_label])
    own = np.array([[0, 0, 0], [0, 1, 2]])  # stroke 1 owns no pixel
    wrong = sketch_metrics(pred, gt, smap, labels, n_categories=2, stroke_pixels=own)
    assert (wrong.stroke_acc, wrong.n_strokes) == (0.5, 2)
    skip = sketch_metrics(pred, gt, smap, labels, n_categories=2, stroke_pixels=own, empty_strokes="skip")
    assert (skip.stroke_acc, skip.n_strokes) == (1.0, 1)
    assert wrong.pixel_acc == skip.pixel_acc == 1.0
    with pytest.raises(SketchSegDataError, match="empty_strokes"):
        sketch_metrics(pred, gt, smap, labels, n_categories=2, stroke_pixels=own, empty_strokes="blank")
