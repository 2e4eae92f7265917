"""The rest of the bad-input matrix: odd rasters, unterminated strokes, label mismatches at
evaluation, sketches without categories in a batch, quarantine counts for MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from sketchseg.data.fscoco import ingest_fscoco
from sketchseg.data.quarantine import quarantine_counts
from sketchseg.data.annotated import AnnotatedSketches
from sketchseg.data.train_set import TrainSketches, collate_train
from sketchseg.errors import SketchSegDataError
from sketchseg.model.config import ModelConfig
from sketchseg.model.model import build_model

TINY = dict(clip_model="sketchseg-tiny", pretrained=None, allow_random_init=True, image_size=64,
            vv_blocks=[4, 5, 6], cross_attention_layers=[4, 5, 6], category_loss_layers=[4, 5, 6])


@pytest.fixture()
def tree(make_sample, tmp_path) -> Path:
    """A private copy of a 3 x 4 sample (test participant 1, one val sketch per other participant)."""
    return make_sample(3, 4, seed=11, test_participants=(1,), val_per_participant=1,
                       write_photos=False).copy(tmp_path / "t")


def _rasters(root: Path) -> list[Path]:
    return sorted((root / "fscoco" / "raster_sketches" / "2").glob("*.jpg"))


def _rewrite(path: Path, image: Image.Image) -> None:
    image.save(path, format="PNG")  # PNG bytes behind a .jpg name, as real folders sometimes have


def test_odd_modes_and_sizes_are_accepted_and_normalised(tree):
    paths = _rasters(tree)
    grey = np.asarray(Image.open(paths[0]).convert("L"))
    # RGBA with transparent paper, 16-bit greyscale, a non-square RGB, an inverted sketch
    rgba = np.zeros((*grey.shape, 4), np.uint8)
    rgba[..., 3] = 255 - grey
    _rewrite(paths[0], Image.fromarray(rgba, "RGBA"))
    _rewrite(paths[1], Image.fromarray((grey.astype(np.int32) * 257).astype(np.uint16)).convert("I;16"))
    Image.fromarray(grey).convert("RGB").resize((300, 200)).save(paths[2], format="JPEG")
    Image.fromarray(255 - grey).save(paths[3], format="JPEG")
    manifest, quarantine = ingest_fscoco(tree / "fscoco", tree / "fscoco-seg", max_rejection_rate=0.0, progress=False)
    assert len(quarantine) == 0
    rows = manifest.set_index("raster_path").loc[[str(p) for p in paths]]
    assert rows["raster_mode"].tolist()[0] == "RGBA"
    assert (rows.iloc[2]["raster_width"], rows.iloc[2]["raster_height"]) == (300, 200)
    assert rows["inverted"].tolist() == [False, False, False, True]
    table = rows.reset_index().assign(categories=[["tree"]] * 4, prompts=[["A sketch of tree."]] * 4)
    items = [TrainSketches(table, image_size=64, max_categories=3, seed=0)[i] for i in range(4)]
    for item in items:
        img = item["image"]
        assert img.shape == (3, 64, 64) and img.dtype == torch.float32
        assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0
        # white paper everywhere at the corners, whatever the file looked like
        assert float(img[:, 0, 0].min()) > 0.9 and float(img[:, -1, -1].min()) > 0.9


def test_vector_without_a_final_stroke_end_is_one_more_stroke(tree):
    npy = sorted((tree / "fscoco" / "vector_sketches" / "2").glob("*.npy"))[0]
    arr = np.load(npy)
    n_before = int((arr[:, 2] == 1).sum())
    arr[-1, 2] = 0  # the pointer left the canvas: the last stroke has no end flag
    extra = np.array([[10, 10, 0], [20, 20, 0]], arr.dtype)
    np.save(npy, np.concatenate([arr, extra]))
    manifest, quarantine = ingest_fscoco(tree / "fscoco", tree / "fscoco-seg", max_rejection_rate=0.0, progress=False)
    row = manifest.set_index("vector_path").loc[str(npy)]
    assert row["n_strokes"] == n_before  # last flagged stroke merged with the trailing run
    assert len(quarantine) == 0


def test_label_mismatch_at_evaluation_names_the_file(tree):
    manifest, _ = ingest_fscoco(tree / "fscoco", tree / "fscoco-seg", max_rejection_rate=0.0, progress=False)
    row = manifest[manifest["labels_json"].notna()].iloc[[0]].copy()
    labels = json.loads(row.iloc[0]["labels_json"])
    row["labels_json"] = json.dumps(labels[:-1])
    with pytest.raises(SketchSegDataError, match=r"\.npy: \d+ strokes but \d+ labels"):
        AnnotatedSketches(row, image_size=64, render_size=64)[0]


def test_a_sketch_without_categories_trains_on_the_holistic_level_only():
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_dict(TINY))
    items = [
        {"sketch_id": 1, "image": torch.rand(3, 64, 64), "caption": "a tree", "categories": ["tree"],
         "prompts": ["A sketch of tree."]},
        {"sketch_id": 2, "image": torch.rand(3, 64, 64), "caption": "!!!", "categories": [], "prompts": []},
        {"sketch_id": 3, "image": torch.rand(3, 64, 64), "caption": "a car", "categories": ["car"],
         "prompts": ["A sketch of car."]},
    ]
    batch = collate_train(items)
    out = model.training_losses(batch["images"], batch["captions"], batch["categories"], batch["prompts"])
    assert torch.isfinite(out["loss"]) and int(out["n_category_pairs"]) == 2
    none = collate_train([items[1], items[1]])
    out = model.training_losses(none["images"], ["x", "y"], none["categories"], none["prompts"])
    assert float(out["loss_category"]) == 0.0 and torch.isfinite(out["loss"])


def test_quarantine_counts_by_kind_and_reason():
    q = pd.DataFrame({
        "kind": ["sketch", "annotation", "sketch", "file"],
        "reason": ["unreadable image: broken data stream", "label count 12 != stroke count 13 in /a/b.json",
                   "missing raster sketch; missing vector sketch", "unexpected file"],
    })
    assert quarantine_counts(q) == {
        "quarantine_sketch": 2, "quarantine_annotation": 1, "quarantine_file": 1,
        "reason.unreadable_image": 1, "reason.label_count_stroke_count": 1,
        "reason.missing_raster_sketch": 1, "reason.missing_vector_sketch": 1, "reason.unexpected_file": 1,
    }
    # file paths and ids never reach the metric name (MLflow caps names at 250 characters)
    long = pd.DataFrame({"kind": ["file", "sketch"], "reason": [
        "duplicate file for the same sketch as /" + "very/" * 60 + "000000000001.jpg",
        "duplicate sketch_id 17 also in participant 3"]})
    assert quarantine_counts(long) == {"quarantine_file": 1, "quarantine_sketch": 1,
                                       "reason.duplicate_file_for_the_same_sketch": 1, "reason.duplicate_sketch_id": 1}


@pytest.mark.parametrize("labels", [None, '["tree"]'])
def test_evaluation_without_annotated_test_sketches_is_a_clear_error(labels):
    from sketchseg.pipelines.evaluation.nodes import evaluate_test

    # test rows without stroke labels, or labelled sketches only in train/val: nothing to score
    table = pd.DataFrame({"sketch_id": [1, 2], "split": ["test", "val"], "labels_json": [None, labels]})
    with pytest.raises(SketchSegDataError, match=r"no annotated test sketches to score \(1 test sketches"):
        evaluate_test({}, table, {}, {}, {}, {})


def test_non_utf8_file_names_are_quarantined_by_name(make_sample, tmp_path):
    import os

    root = make_sample(2, 2, seed=1, test_participants=(1,), val_per_participant=1,
                       write_photos=False).copy(tmp_path / "tree")
    bad = os.path.join(os.fsencode(root / "fscoco" / "raster_sketches" / "2"), b"\xff\xfe.jpg")
    with open(bad, "wb") as f:
        f.write(b"x")
    manifest, quarantine = ingest_fscoco(root / "fscoco", root / "fscoco-seg", max_rejection_rate=1.0, progress=False)
    assert len(manifest) == 4
    row = quarantine[quarantine["path"].str.contains("\\xff\\xfe", regex=False)]
    assert len(row) == 1 and row.iloc[0]["path"].endswith("raster_sketches/2/\\xff\\xfe.jpg")
