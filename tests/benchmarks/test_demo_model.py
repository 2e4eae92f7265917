"""The demo-model measurement: its hand-drawn scenes and its scoring (not the model's number)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sketchseg.data.sample import CATEGORIES
from tests.conftest import load_benchmark

scenes_mod = load_benchmark("hand_drawn_scenes")
demo = load_benchmark("demo_model")


@pytest.fixture(scope="module")
def scenes():
    return scenes_mod.hand_drawn_scenes()


def test_scenes_are_many_deterministic_and_of_the_sample_vocabulary(scenes):
    assert len(scenes) >= 10
    again = scenes_mod.hand_drawn_scenes()
    assert all(np.array_equal(a.image, b.image) and np.array_equal(a.truth, b.truth) for a, b in zip(scenes, again))
    assert all(set(s.categories) <= set(CATEGORIES) and 2 <= len(s.categories) <= 4 for s in scenes)
    assert scenes[0].categories == ["house", "tree", "sun"]  # the scene
    assert len({c for s in scenes for c in s.categories}) >= 15
    assert len({s.image.shape for s in scenes}) >= 8 and len({s.pen for s in scenes}) >= 4
    assert {s.style for s in scenes} == {"clean", "wobbly"}


def test_truth_labels_exactly_the_ink_and_every_category_draws_some(scenes):
    for s in scenes:
        ink = s.image < 128
        assert np.array_equal(ink, s.truth != scenes_mod.PAPER), s.name
        for i, c in enumerate(s.categories):
            assert (s.truth == i).sum() > 50, (s.name, c)
        assert (s.truth == scenes_mod.AMBIGUOUS).sum() < 0.02 * ink.sum(), s.name


def test_pixels_inked_by_two_objects_are_ambiguous(scenes):
    # scene 2's car sits on its road: the pixels both inked are neither's
    s = scenes[1]
    assert s.categories[:2] == ["car", "road"]
    amb = s.truth == scenes_mod.AMBIGUOUS
    assert amb.sum() > 0 and (s.image[amb] == 0).all()


def _scene(truth: list[list[int]], cats: list[str]):
    t = np.array(truth, dtype=np.int64)
    return scenes_mod.HandScene("x", np.where(t == -1, 255, 0).astype(np.uint8), t, cats, "clean", 3)


def test_score_counts_right_ink_pixels_and_leaves_ambiguous_out():
    # 5 scored ink pixels (3 of cat 0, 2 of cat 1), one ambiguous, three paper
    scene = _scene([[0, 0, -1], [0, 1, -2], [1, -1, -1]], ["a", "b"])
    pred = np.array([[0, 1, -1], [0, 1, 1], [-1, 0, 0]])  # right: (0,0) (1,0) (1,1); wrong: (0,1) and (2,0) unlabelled
    sc = demo.score_scene(scene, pred)
    assert (sc.ink, sc.correct, sc.largest) == (5, 3, 3)
    assert sc.accuracy == pytest.approx(0.6)
    assert sc.predicted_share == pytest.approx({"a": 2 / 5, "b": 2 / 5})
    other = demo.score_scene(_scene([[1, 1], [1, -1]], ["a", "b"]), np.array([[1, 0], [1, 0]]))
    model, largest, chance = demo.pooled([sc, other])
    assert model == pytest.approx((3 + 2) / 8) and largest == pytest.approx((3 + 3) / 8)
    assert chance == pytest.approx((5 / 2 + 3 / 2) / 8)
    with pytest.raises(ValueError, match="does not match"):
        demo.score_scene(scene, pred[:2])


def test_report_names_the_goal_and_every_scene(scenes, tmp_path):
    scores = [demo.score_scene(s, np.where(s.truth >= 0, 0, -1)) for s in scenes]
    meta = {"epoch": "7", "model_config": json.dumps({"clip_model": "sketchseg-tiny", "image_size": 64})}  # as saved
    text = demo.markdown(scores, tmp_path / "best.safetensors", meta, tmp_path / "demo-model.png")
    assert "goal: 60 %" in text and all(f"| {s.name} |" in text for s in scenes)
    assert "(epoch 7, sketchseg-tiny)" in text
    demo.figure(scenes[:4], [s.truth for s in scenes[:4]], scores[:4], tmp_path / "demo-model.png", tile=80)
    assert (tmp_path / "demo-model.png").stat().st_size > 1000


def test_the_report_names_the_checkpoint_from_its_projects_data_folder():
    dm = load_benchmark("demo_model")
    assert str(dm.project_relative(Path("/tmp/docs/demo/data/06_models/sample/ours-sample/best.safetensors"))) == \
        "data/06_models/sample/ours-sample/best.safetensors"
    assert str(dm.project_relative(Path("/elsewhere/authors.safetensors"))) == "/elsewhere/authors.safetensors"
