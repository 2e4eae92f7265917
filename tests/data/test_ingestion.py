"""FS-COCO ingestion: manifest, quarantine reasons, nothing lost (sketchseg.data.fscoco)."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sketchseg.data import fscoco
from sketchseg.data.fscoco import MANIFEST_COLUMNS, QUARANTINE_COLUMNS, ingest_fscoco
from sketchseg.data.splits import splits_from_fscoco_seg
from sketchseg.data.annotated import AnnotatedSketches
from sketchseg.errors import SketchSegDataError

N_PART, PER = 4, 5
N = N_PART * PER
FOLDERS = {"raster_sketches": (".jpg", ".jpeg", ".png"), "vector_sketches": (".npy",), "text": (".txt",)}


@pytest.fixture()
def pristine(make_sample) -> Path:
    """The shared 4 x 5 sample (read only)."""
    return make_sample(N_PART, PER, seed=3, test_participants=(1,), val_per_participant=1, write_photos=False).root


@pytest.fixture()
def tree(make_sample, tmp_path: Path) -> Path:
    """A private copy of the 4 x 5 sample (to corrupt)."""
    return make_sample(N_PART, PER, seed=3, test_participants=(1,), val_per_participant=1,
                       write_photos=False).copy(tmp_path / "copy")


def _ingest(root: Path, rate: float = 1.0, **kw) -> tuple[pd.DataFrame, pd.DataFrame]:
    return ingest_fscoco(root / "fscoco", root / "fscoco-seg", max_rejection_rate=rate, progress=False, **kw)


def _candidates(root: Path) -> int:
    """Independent count of candidate sketches: (participant folder, int-or-raw stem) keys."""
    keys = set()
    for folder, suffixes in FOLDERS.items():
        for f in (root / "fscoco" / folder).glob("*/*"):
            if f.suffix.lower() in suffixes:
                keys.add((f.parent.name.lstrip("0") if f.parent.name.isdigit() else f.parent.name,
                          int(f.stem) if f.stem.isdigit() else f.stem))
    return len(keys)


def _check_nothing_lost(root: Path, manifest: pd.DataFrame, quarantine: pd.DataFrame) -> None:
    rejected = quarantine[quarantine["kind"] == "sketch"]
    assert len(manifest) + len(rejected) == _candidates(root)
    assert not manifest["sketch_id"].duplicated().any()


def _pick(root: Path, pid: int = 2, k: int = 0, split: str | None = None) -> tuple[str, Path]:
    """(stem, fscoco root) of the k-th sketch of participant pid, or of a seg split."""
    if split:
        stem = sorted((root / "fscoco-seg" / split / "classes").iterdir())[k].stem
    else:
        stem = sorted((root / "fscoco" / "text" / str(pid)).iterdir())[k].stem
    return stem, root / "fscoco"


def _pid_of(root: Path, stem: str) -> str:
    return next((root / "fscoco" / "text").glob(f"*/{stem}.txt")).parent.name


# ------------------------------------------------------------------------------------------- clean
def test_clean_tree_ingests_fully(pristine: Path):
    manifest, quarantine = _ingest(pristine, rate=0.0)
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert list(quarantine.columns) == QUARANTINE_COLUMNS and len(quarantine) == 0
    assert len(manifest) == N
    assert manifest[["participant_id", "sketch_id"]].apply(tuple, axis=1).is_monotonic_increasing
    for col in ("sketch_id", "participant_id", "n_strokes", "raster_width", "raster_height"):
        assert manifest[col].dtype == np.int64, col
    row = manifest.iloc[0]
    assert row["stem"] == f"{row['sketch_id']:012d}"
    assert Path(row["raster_path"]).is_file() and Path(row["vector_path"]).is_file()
    assert row["caption"] == Path(row["raster_path"].replace("raster_sketches", "text")).with_suffix(".txt").read_text()
    assert (manifest["raster_width"] == 256).all() and (manifest["raster_mode"] == "L").all()
    assert not manifest["inverted"].any()
    counts = manifest["annotated_split"].value_counts(dropna=False).to_dict()
    assert counts.get("test") == PER and counts.get("val") == N_PART - 1
    assert manifest.loc[manifest["annotated_split"] == "test", "participant_id"].eq(1).all()
    ann = manifest[manifest["annotated_split"].notna()]
    for _, r in ann.iterrows():
        labels = json.loads(r["labels_json"])
        assert labels == json.loads(Path(r["labels_path"]).read_text())
        assert len(labels) == r["n_strokes"]
        assert Path(r["seg_vector_path"]).is_file()
    assert manifest.loc[manifest["annotated_split"].isna(), "labels_json"].isna().all()


def test_process_pool_gives_the_same_result(pristine: Path, monkeypatch):
    monkeypatch.setattr(fscoco, "_INLINE_BELOW", 0)
    monkeypatch.setattr(fscoco, "_BATCH", 3)
    m1, q1 = _ingest(pristine, workers=2)
    m0, q0 = _ingest(pristine, workers=1)
    pd.testing.assert_frame_equal(m1, m0)
    assert len(q1) == len(q0) == 0


# ------------------------------------------------------------------------------------ broken trees
def _truncate_jpeg(root: Path) -> tuple[Path, str]:
    stem, fs = _pick(root)
    p = fs / "raster_sketches" / "2" / f"{stem}.jpg"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return p, "unreadable image"


def _zero_byte_caption(root: Path) -> tuple[Path, str]:
    stem, fs = _pick(root)
    p = fs / "text" / "2" / f"{stem}.txt"
    p.write_bytes(b"")
    return p, "caption is empty"


def _non_utf8_caption(root: Path) -> tuple[Path, str]:
    stem, fs = _pick(root)
    p = fs / "text" / "2" / f"{stem}.txt"
    p.write_bytes(b"a tree \xff\xfe by a car")
    return p, "caption is not valid UTF-8 (byte 0xff at position 7)"


def _garbage_npy(root: Path) -> tuple[Path, str]:
    stem, fs = _pick(root)
    p = fs / "vector_sketches" / "2" / f"{stem}.npy"
    p.write_bytes(b"this is not an npy file")
    return p, "vector sketch does not parse"


def _object_npy(root: Path) -> tuple[Path, str]:
    stem, fs = _pick(root)
    p = fs / "vector_sketches" / "2" / f"{stem}.npy"
    np.save(p, np.array([[1.0, 2.0, 0.0], "x"], dtype=object), allow_pickle=True)
    return p, "vector sketch does not parse: Object arrays"


def _nan_npy(root: Path) -> tuple[Path, str]:
    stem, fs = _pick(root)
    p = fs / "vector_sketches" / "2" / f"{stem}.npy"
    np.save(p, np.array([[1, 2, 0], [np.nan, 3, 1]], np.float32))
    return p, "vector sketch does not parse: vector sketch has non-finite values"


def _empty_npy(root: Path) -> tuple[Path, str]:
    stem, fs = _pick(root)
    p = fs / "vector_sketches" / "2" / f"{stem}.npy"
    np.save(p, np.zeros((0, 3), np.float32))
    return p, "vector sketch has no strokes"


def _missing_caption(root: Path) -> tuple[Path, str]:
    stem, fs = _pick(root)
    (fs / "text" / "2" / f"{stem}.txt").unlink()
    return fs / "raster_sketches" / "2" / f"{stem}.jpg", "missing caption file"


def _missing_raster(root: Path) -> tuple[Path, str]:
    stem, fs = _pick(root)
    (fs / "raster_sketches" / "2" / f"{stem}.jpg").unlink()
    return fs / "vector_sketches" / "2" / f"{stem}.npy", "missing raster sketch"


def _missing_vector(root: Path) -> tuple[Path, str]:
    stem, fs = _pick(root)
    (fs / "vector_sketches" / "2" / f"{stem}.npy").unlink()
    return fs / "raster_sketches" / "2" / f"{stem}.jpg", "missing vector sketch"


def _non_integer_stem(root: Path) -> tuple[Path, str]:
    stem, fs = _pick(root)
    for folder, suffix in (("raster_sketches", ".jpg"), ("vector_sketches", ".npy"), ("text", ".txt")):
        (fs / folder / "2" / f"{stem}{suffix}").rename(fs / folder / "2" / f"img_{stem}{suffix}")
    return fs / "raster_sketches" / "2" / f"img_{stem}.jpg", "file stem is not an integer id"


def _symlinked_caption(root: Path) -> tuple[Path, str]:
    """A caption linked to a file outside the data root (a system file, say) must not become a caption."""
    stem, fs = _pick(root)
    secret = root.parent / "outside" / "secret.txt"
    secret.parent.mkdir(exist_ok=True)
    secret.write_text("root:x:0:0:root:/root:/bin/bash")
    p = fs / "text" / "2" / f"{stem}.txt"
    p.unlink()
    p.symlink_to(secret)
    return p, f"points outside the data root: resolves to {secret.resolve()}"


def _symlinked_vector(root: Path) -> tuple[Path, str]:
    stem, fs = _pick(root)
    p = fs / "vector_sketches" / "2" / f"{stem}.npy"
    elsewhere = root.parent / "outside" / "v.npy"
    elsewhere.parent.mkdir(exist_ok=True)
    p.rename(elsewhere)  # a valid vector sketch, but outside the root
    p.symlink_to(elsewhere)
    return p, "points outside the data root"


def _absurd_coordinates(root: Path) -> tuple[Path, str]:
    stem, fs = _pick(root)
    p = fs / "vector_sketches" / "2" / f"{stem}.npy"
    arr = np.load(p)
    arr = arr.astype(np.float64)
    arr[1, 0] = 1e30
    np.save(p, arr)
    return p, "vector sketch has points far outside the 256 frame (1 points, first at row 1: x = 1e+30"


SKETCH_BREAKERS: list[Callable[[Path], tuple[Path, str]]] = [
    _truncate_jpeg, _zero_byte_caption, _non_utf8_caption, _garbage_npy, _object_npy, _nan_npy, _empty_npy,
    _missing_caption, _missing_raster, _missing_vector, _non_integer_stem, _symlinked_caption, _symlinked_vector,
    _absurd_coordinates,
]


def test_points_moderately_outside_the_frame_are_legitimate(tree: Path):
    """FS-COCO has points a little outside [0, 256): kept; only more than FRAME_MARGIN beyond is absurd."""
    stem, fs = _pick(tree)
    p = fs / "vector_sketches" / "2" / f"{stem}.npy"
    arr = np.load(p).astype(np.float64)
    arr[0, :2] = (-255.0, 511.0)
    np.save(p, arr)
    manifest, quarantine = _ingest(tree, rate=0.0)
    assert len(quarantine) == 0 and len(manifest) == N
    arr[0, :2] = (-256.5, 10.0)
    np.save(p, arr)
    _, quarantine = _ingest(tree)
    assert quarantine["reason"].tolist() == [
        "vector sketch has points far outside the 256 frame (1 points, first at row 0: x = -256.5; "
        "the limit is 256 units beyond the frame)"]


def test_symlinked_annotation_files_are_quarantined(tree: Path):
    sid, d = _ann_case(tree)
    p = d / "vector_sketches" / f"{sid:012d}.npy"
    elsewhere = tree.parent / "elsewhere.npy"
    p.rename(elsewhere)
    p.symlink_to(elsewhere)
    manifest, quarantine = _ingest(tree, rate=0.0)
    (row,) = quarantine.itertuples()
    assert row.kind == "annotation" and row.path == str(p)
    assert row.reason == (f"points outside the data root: resolves to {elsewhere.resolve()}; "
                          "the sketch stays in test, not scored")
    assert manifest.set_index("sketch_id").loc[sid, "labels_json"] is None


def test_symlinks_inside_the_root_are_fine(tree: Path):
    stem, fs = _pick(tree)
    p = fs / "text" / "2" / f"{stem}.txt"
    copy = fs / "text" / f"{stem}.real"  # still under the root
    p.rename(copy)
    p.symlink_to(copy)
    manifest, quarantine = _ingest(tree)
    assert (quarantine["kind"] == "sketch").sum() == 0 and len(manifest) == N


@pytest.mark.parametrize("breaker", SKETCH_BREAKERS, ids=lambda f: f.__name__.strip("_"))
def test_broken_sketch_is_quarantined_with_its_reason(tree: Path, breaker):
    path, reason = breaker(tree)
    manifest, quarantine = _ingest(tree)
    rejected = quarantine[quarantine["kind"] == "sketch"]
    assert len(rejected) == 1, rejected
    row = rejected.iloc[0]
    assert row["reason"].startswith(reason), row["reason"]
    assert row["path"] == str(path)
    assert row["participant_id"] == 2
    assert len(manifest) == N - 1
    _check_nothing_lost(tree, manifest, quarantine)


def test_all_breakages_at_once_lose_nothing(tree: Path):
    fs = tree / "fscoco"
    stems = [_pick(tree, pid=3, k=k)[0] for k in range(5)]  # five different sketches of participant 3
    (fs / "raster_sketches" / "3" / f"{stems[0]}.jpg").write_bytes(b"\xff\xd8\xff")
    (fs / "text" / "3" / f"{stems[1]}.txt").write_bytes(b"   \n")
    (fs / "vector_sketches" / "3" / f"{stems[2]}.npy").write_bytes(b"")
    (fs / "text" / "3" / f"{stems[3]}.txt").unlink()
    (fs / "raster_sketches" / "3" / f"{stems[4]}.jpg").unlink()
    (fs / "vector_sketches" / "3" / f"{stems[4]}.npy").unlink()
    manifest, quarantine = _ingest(tree)
    rejected = quarantine[quarantine["kind"] == "sketch"].set_index("sketch_id")
    reasons = {int(s): rejected.loc[int(s), "reason"] for s in stems}
    assert reasons[int(stems[0])].startswith("unreadable image")
    assert reasons[int(stems[1])] == "caption is empty"
    assert reasons[int(stems[2])].startswith("vector sketch does not parse")
    assert reasons[int(stems[3])] == "missing caption file"
    assert reasons[int(stems[4])] == "missing raster sketch; missing vector sketch"
    assert len(manifest) == N - 5
    _check_nothing_lost(tree, manifest, quarantine)


def test_duplicate_sketch_id_keeps_lowest_participant(tree: Path):
    stem, fs = _pick(tree, pid=2)
    for folder, suffix in (("raster_sketches", ".jpg"), ("vector_sketches", ".npy"), ("text", ".txt")):
        unpadded = str(int(stem))  # stems are compared as integers: 000000123456 == 123456
        shutil.copy(fs / folder / "2" / f"{stem}{suffix}", fs / folder / "3" / f"{unpadded}{suffix}")
    manifest, quarantine = _ingest(tree)
    rejected = quarantine[quarantine["kind"] == "sketch"]
    assert len(rejected) == 1
    row = rejected.iloc[0]
    assert row["reason"] == f"duplicate sketch_id {int(stem)} also in participant 2"
    assert row["participant_id"] == 3 and row["sketch_id"] == int(stem)
    kept = manifest[manifest["sketch_id"] == int(stem)]
    assert kept["participant_id"].tolist() == [2]
    assert len(manifest) == N
    _check_nothing_lost(tree, manifest, quarantine)


def test_non_integer_participant_folder(tree: Path):
    fs = tree / "fscoco"
    for folder in FOLDERS:
        (fs / folder / "4").rename(fs / folder / "p4")
    manifest, quarantine = _ingest(tree)
    rejected = quarantine[quarantine["kind"] == "sketch"]
    assert len(rejected) == PER
    assert rejected["reason"].str.startswith("participant folder name is not an integer").all()
    assert rejected["participant_id"].isna().all() and rejected["sketch_id"].notna().all()
    assert 4 not in set(manifest["participant_id"])
    # participant 4's val sketch is still in FS-COCO-seg but no longer in the manifest
    ann = quarantine[quarantine["kind"] == "annotation"]
    assert len(ann) == 1 and "is not in the FS-COCO manifest" in ann.iloc[0]["reason"]
    _check_nothing_lost(tree, manifest, quarantine)


def test_unexpected_files_are_reported_but_not_candidates(tree: Path):
    fs = tree / "fscoco"
    (fs / "raster_sketches" / "2" / "notes.bmp").write_bytes(b"BM")
    (fs / "text" / "README").write_text("hello")
    (fs / "vector_sketches" / "2" / "extra").mkdir()
    manifest, quarantine = _ingest(tree, rate=0.0)
    files = quarantine[quarantine["kind"] == "file"]
    assert len(files) == 3 and (quarantine["kind"] == "file").all()
    assert files["reason"].str.startswith("unexpected").all()
    assert str(fs / "raster_sketches" / "2" / "notes.bmp") in set(files["path"])
    assert len(manifest) == N


def test_unpadded_stems_pair_with_padded_ones(tree: Path):
    stem, fs = _pick(tree, pid=2)
    (fs / "text" / "2" / f"{stem}.txt").rename(fs / "text" / "2" / f"{int(stem)}.txt")
    manifest, quarantine = _ingest(tree, rate=0.0)
    assert len(manifest) == N and len(quarantine) == 0
    assert manifest.loc[manifest["sketch_id"] == int(stem), "stem"].item() == stem


def test_inverted_and_png_rasters_are_accepted(tree: Path):
    stem, fs = _pick(tree, pid=2)
    jpg = fs / "raster_sketches" / "2" / f"{stem}.jpg"
    Image.fromarray(255 - np.asarray(Image.open(jpg))).save(jpg)
    stem2 = _pick(tree, pid=2, k=1)[0]
    jpg2 = fs / "raster_sketches" / "2" / f"{stem2}.jpg"
    Image.open(jpg2).convert("RGBA").save(jpg2.with_suffix(".png"))
    jpg2.unlink()
    manifest, quarantine = _ingest(tree, rate=0.0)
    assert len(manifest) == N and len(quarantine) == 0
    inv = manifest.set_index("sketch_id")
    assert bool(inv.loc[int(stem), "inverted"]) and inv.loc[int(stem2), "raster_mode"] == "RGBA"
    assert inv.loc[int(stem2), "raster_path"].endswith(".png")


# ------------------------------------------------------------------------------------- annotations
def _ann_case(tree: Path, split: str = "test") -> tuple[int, Path]:
    stem = _pick(tree, split=split)[0]
    return int(stem), tree / "fscoco-seg" / split


def test_label_count_mismatch_keeps_sketch_in_its_split_unscored(tree: Path):
    """Broken labels must not move a test sketch into train (that would leak a test participant)."""
    sid, d = _ann_case(tree)
    p = d / "classes" / f"{sid:012d}.json"
    labels = json.loads(p.read_text())
    p.write_text(json.dumps(labels[:-1]))
    manifest, quarantine = _ingest(tree, rate=0.0)
    (row,) = quarantine.itertuples()
    assert row.kind == "annotation" and row.sketch_id == sid and row.participant_id == 1
    assert row.reason == (f"label count {len(labels) - 1} != stroke count {len(labels)} in {p}; "
                          "the sketch stays in test, not scored")
    m = manifest.set_index("sketch_id")
    assert len(manifest) == N and m.loc[sid, "annotated_split"] == "test" and m.loc[sid, "labels_json"] is None
    assert (manifest["annotated_split"] == "test").sum() == PER
    assert splits_from_fscoco_seg(manifest).set_index("sketch_id").loc[sid, "split"] == "test"
    _check_nothing_lost(tree, manifest, quarantine)


def test_labels_without_the_open_trailing_run_are_accepted(tree: Path):
    """FS-COCO-seg labels the closed strokes; a trailing run with no closing flag may be unlabelled."""
    sid, d = _ann_case(tree)
    vec = d / "vector_sketches" / f"{sid:012d}.npy"
    arr = np.load(vec)
    np.save(vec, np.concatenate([arr, [[10.0, 10.0, 0.0], [12.0, 14.0, 0.0]]]))  # an open tail: one more stroke
    labels = json.loads((d / "classes" / f"{sid:012d}.json").read_text())
    manifest, quarantine = _ingest(tree, rate=0.0)
    assert len(quarantine) == 0
    row = manifest.set_index("sketch_id").loc[sid]
    assert row["annotated_split"] == "test" and json.loads(row["labels_json"]) == labels
    item = AnnotatedSketches(manifest[manifest["sketch_id"] == sid], image_size=32, render_size=64)[0]
    assert len(item.stroke_labels) == len(labels)  # the tail is not rendered for scoring


@pytest.mark.parametrize(
    ("breaker", "reason"),
    [
        (lambda d, s: (d / "classes" / f"{s}.json").unlink(), "missing label file"),
        (lambda d, s: (d / "vector_sketches" / f"{s}.npy").unlink(), "missing vector file"),
        (lambda d, s: (d / "classes" / f"{s}.json").write_text("[\"tree\", "), "label file does not parse"),
        (lambda d, s: (d / "classes" / f"{s}.json").write_text('{"a": 1}'), "label file is not a list of strings"),
        (lambda d, s: (d / "vector_sketches" / f"{s}.npy").write_bytes(b"x"), "vector sketch does not parse"),
    ],
    ids=["missing-labels", "missing-vector", "bad-json", "not-a-list", "bad-npy"],
)
def test_annotation_problems(tree: Path, breaker, reason):
    sid, d = _ann_case(tree, "val")
    breaker(d, f"{sid:012d}")
    manifest, quarantine = _ingest(tree, rate=0.0)
    assert len(quarantine) == 1
    row = quarantine.iloc[0]
    assert row["kind"] == "annotation" and row["reason"].startswith(reason) and row["sketch_id"] == sid
    assert row["reason"].endswith("; the sketch stays in val, not scored")
    assert len(manifest) == N
    m = manifest.set_index("sketch_id")
    assert m.loc[sid, "annotated_split"] == "val" and m.loc[sid, "labels_json"] is None
    assert (manifest["annotated_split"] == "val").sum() == N_PART - 1


def test_annotation_of_unknown_sketch(tree: Path):
    d = tree / "fscoco-seg" / "test"
    src = sorted((d / "classes").iterdir())[0].stem
    shutil.copy(d / "classes" / f"{src}.json", d / "classes" / "000000999999.json")
    shutil.copy(d / "vector_sketches" / f"{src}.npy", d / "vector_sketches" / "000000999999.npy")
    manifest, quarantine = _ingest(tree, rate=0.0)
    (row,) = quarantine.itertuples()
    assert row.kind == "annotation" and row.sketch_id == 999999 and pd.isna(row.participant_id)
    assert "not in the FS-COCO manifest" in row.reason
    assert len(manifest) == N


def test_missing_seg_root_is_allowed(tree: Path, caplog):
    shutil.rmtree(tree / "fscoco-seg")
    with caplog.at_level(logging.WARNING, logger="sketchseg.data.fscoco"):
        manifest, quarantine = _ingest(tree, rate=0.0)
    assert "FS-COCO-seg not found" in caplog.text
    assert len(manifest) == N and manifest["annotated_split"].isna().all() and len(quarantine) == 0


# ------------------------------------------------------------------------------------------ errors
def test_rejection_limit(tree: Path):
    fs = tree / "fscoco"
    for k in range(3):
        stem = _pick(tree, pid=2, k=k)[0]
        (fs / "text" / "2" / f"{stem}.txt").write_bytes(b"")
    with pytest.raises(SketchSegDataError) as err:
        _ingest(tree, rate=0.1)
    msg = str(err.value)
    assert "3 of 20" in msg and "caption is empty x3" in msg and "max_rejection_rate" in msg
    manifest, _ = _ingest(tree, rate=0.15)
    assert len(manifest) == N - 3


def test_missing_root_error_says_how_to_fix(tmp_path: Path):
    with pytest.raises(SketchSegDataError) as err:
        ingest_fscoco(tmp_path / "nowhere", tmp_path / "seg", max_rejection_rate=0.0)
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg
    assert "kedro run --pipelines=make_sample --env=sample" in msg and "download FS-COCO" in msg


def test_missing_subfolder_error(tree: Path):
    shutil.rmtree(tree / "fscoco" / "text")
    with pytest.raises(SketchSegDataError, match=r"text/") as err:
        _ingest(tree)
    assert "make_sample" in str(err.value)


def test_class_order_reads_the_release_layout(tmp_path: Path, caplog):
    from sketchseg.data.annotated import class_order

    data = {"fscoco_seg_root": str(tmp_path)}
    with caplog.at_level(logging.WARNING):
        assert class_order(data) == []
    assert "no all_classes.json" in caplog.text
    (tmp_path / "test").mkdir()
    (tmp_path / "val").mkdir()
    (tmp_path / "test" / "all_classes.json").write_text(json.dumps(["blank_pixel", "tree", "car"]))
    (tmp_path / "val" / "all_classes.json").write_text(json.dumps(["blank_pixel", "car", "tree", "dog"]))
    assert class_order(data) == ["tree", "car", "dog"]  # test/ first, val/'s extra labels appended
    (tmp_path / "val" / "all_classes.json").write_text("[\"tree\", ")
    with pytest.raises(SketchSegDataError, match=r"val/all_classes.json: cannot read"):
        class_order(data)
