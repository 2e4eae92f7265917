"""Ground truth where strokes of different classes overlap (``evaluation.overlap_rule``): the class
first in FS-COCO-seg's class order (default), or the class with the most covering strokes, ties
alphabetical (the authors' evaluation code)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sketchseg.data.annotated import AnnotatedSketches
from sketchseg.errors import SketchSegConfigError, SketchSegDataError
from sketchseg.data.ground_truth import gt_label_map_by_count
from sketchseg.data.annotated import annotated_split, class_order


# ------------------------------------------------------------------------ gt_label_map_by_count
def test_most_covering_strokes_win_by_hand():
    # 4x4 map; strokes 0 and 1 are class 0, stroke 2 class 1; pixel 6 has two class-0 strokes, one class-1
    pairs = np.array([[0, 0, 1, 1, 2, 2, 2], [5, 6, 6, 7, 6, 9, 10]])
    gt = gt_label_map_by_count(pairs, np.array([0, 0, 1]), (4, 4), tie_order=[1, 0])
    expected = np.full(16, -1)
    expected[[5, 6, 7]] = 0
    expected[[9, 10]] = 1
    np.testing.assert_array_equal(gt.reshape(-1), expected)


def test_ties_follow_tie_order_and_unlabelled_strokes_do_not_vote():
    # pixel 2: one stroke of class 0, one of class 1 and an unlabelled stroke; pixel 12: unlabelled only
    pairs = np.array([[0, 0, 1, 1, 2, 2], [1, 2, 2, 3, 2, 12]])
    labels = np.array([0, 1, -1])
    assert gt_label_map_by_count(pairs, labels, (4, 4), [1, 0]).reshape(-1)[[1, 2, 3, 12]].tolist() == [0, 1, 1, -1]
    assert gt_label_map_by_count(pairs, labels, (4, 4), [0, 1]).reshape(-1)[[1, 2, 3, 12]].tolist() == [0, 0, 1, -1]
    assert (gt_label_map_by_count(np.zeros((2, 0), int), labels, (4, 4), [0, 1]) == -1).all()


def test_bad_arguments_are_named():
    pairs = np.array([[0], [3]])
    with pytest.raises(SketchSegDataError, match="tie_order"):
        gt_label_map_by_count(pairs, np.array([0]), (2, 2), [0, 0])
    with pytest.raises(SketchSegDataError, match="stroke_pixels out of range"):
        gt_label_map_by_count(np.array([[0], [4]]), np.array([0]), (2, 2), [0])
    with pytest.raises(SketchSegDataError, match="stroke_labels"):
        gt_label_map_by_count(pairs, np.array([1]), (2, 2), [0])


# ------------------------------------------------------------------------ annotated sketches
def _sketch(tmp_path: Path, name: str, strokes: list[list[tuple[float, float]]], labels: list[str]) -> dict:
    rows = [(x, y, 1.0 if k == len(s) - 1 else 0.0) for s in strokes for k, (x, y) in enumerate(s)]
    path = tmp_path / f"{name}.npy"
    np.save(path, np.array(rows, dtype=np.float32))
    return {"sketch_id": len(name), "vector_path": str(path), "labels_json": json.dumps(labels)}


HORIZONTAL = [(32.0, 128.0), (224.0, 128.0)]
VERTICAL = [(128.0, 32.0), (128.0, 224.0)]
CROSS = (32, 32)  # the crossing at render size 64 (x 4 / 256 scale)


def _gt_at_cross(row: dict, class_order: list[str], rule: str) -> tuple[str, AnnotatedSketches]:
    data = AnnotatedSketches(pd.DataFrame([row]), image_size=16, render_size=64, class_order=class_order,
                             overlap_rule=rule)
    item = data[0]
    return item.categories[item.gt[CROSS]], item


def test_stroke_count_decides_under_most_strokes(tmp_path):
    # zebra drawn twice over the same line, apple once across it; the class order puts apple first
    row = _sketch(tmp_path, "count", [HORIZONTAL, HORIZONTAL, VERTICAL], ["zebra", "zebra", "apple"])
    first, a = _gt_at_cross(row, ["apple", "zebra"], "lowest_class_index")
    most, b = _gt_at_cross(row, ["apple", "zebra"], "most_strokes")
    assert (first, most) == ("apple", "zebra")
    differ = a.gt != b.gt
    assert differ[CROSS] and differ.sum() <= 9  # only the 3x3 crossing differs
    np.testing.assert_array_equal(a.gt >= 0, b.gt >= 0)  # same stroke pixels are scored


def test_ties_go_alphabetical_under_most_strokes(tmp_path):
    row = _sketch(tmp_path, "tie", [HORIZONTAL, VERTICAL], ["zebra", "apple"])
    assert _gt_at_cross(row, ["zebra", "apple"], "lowest_class_index")[0] == "zebra"
    assert _gt_at_cross(row, ["zebra", "apple"], "most_strokes")[0] == "apple"


def test_unknown_rule_is_a_config_error(tmp_path):
    row = _sketch(tmp_path, "bad", [HORIZONTAL], ["zebra"])
    with pytest.raises(SketchSegConfigError, match="evaluation.overlap_rule must be one of most_strokes, lowest_class_index"):
        AnnotatedSketches(pd.DataFrame([row]), image_size=16, overlap_rule="majority")


def test_annotated_split_takes_the_rule_it_is_given(tmp_path):
    row = {**_sketch(tmp_path, "split", [HORIZONTAL, HORIZONTAL, VERTICAL], ["zebra", "zebra", "apple"]),
           "split": "test"}
    (tmp_path / "seg" / "test").mkdir(parents=True)
    (tmp_path / "seg" / "test" / "all_classes.json").write_text(json.dumps(["blank_pixel", "apple", "zebra"]))
    order = class_order({"fscoco_seg_root": str(tmp_path / "seg")})
    rendering = {"render_size": 64, "class_order": order}
    default = annotated_split(pd.DataFrame([row]), "test", 16, overlap_rule="lowest_class_index", **rendering)[0]
    most = annotated_split(pd.DataFrame([row]), "test", 16, overlap_rule="most_strokes", **rendering)[0]
    assert default.categories[default.gt[CROSS]] == "apple" and most.categories[most.gt[CROSS]] == "zebra"
