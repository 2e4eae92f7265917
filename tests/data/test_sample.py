"""The generated FS-COCO + FS-COCO-seg sample (sketchseg.data.sample)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sketchseg.data.sample import CATEGORIES, PLURALS, generate_sample, make_scene
from sketchseg.data.strokes import load_vector_sketch, parse_strokes
from sketchseg.errors import SketchSegDataError

N_PART, PER = 4, 5
TEST_PIDS = (1,)
FSCOCO_DIRS = {"images", "raster_sketches", "vector_sketches", "text", "raw_data"}
SUFFIX = {"images": ".jpg", "raster_sketches": ".jpg", "vector_sketches": ".npy", "text": ".txt", "raw_data": ".json"}


def _make(root: Path, seed: int = 0) -> dict:
    return generate_sample(root / "fscoco", root / "fscoco-seg", n_participants=N_PART, sketches_per_participant=PER,
                           seed=seed, test_participants=TEST_PIDS, val_per_participant=1, progress=False)


@pytest.fixture()
def sample(make_sample) -> Path:
    generated = make_sample(N_PART, PER, seed=0, test_participants=TEST_PIDS, val_per_participant=1)
    summary = generated.summary
    assert summary["sketches"] == N_PART * PER
    assert (summary["test"], summary["val"]) == (PER * len(TEST_PIDS), N_PART - len(TEST_PIDS))
    return generated.root


def _files(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file())


def test_fscoco_layout(sample: Path):
    fs = sample / "fscoco"
    assert {p.name for p in fs.iterdir() if p.is_dir()} == FSCOCO_DIRS
    stems_by_dir = {}
    for sub in FSCOCO_DIRS:
        assert sorted(p.name for p in (fs / sub).iterdir()) == sorted(str(i) for i in range(1, N_PART + 1))
        stems = set()
        for pdir in (fs / sub).iterdir():
            files = sorted(pdir.iterdir())
            assert len(files) == PER
            for f in files:
                assert f.suffix == SUFFIX[sub]
                assert re.fullmatch(r"\d{12}", f.stem), f
                stems.add((pdir.name, f.stem))
        stems_by_dir[sub] = stems
    assert len({frozenset(s) for s in stems_by_dir.values()}) == 1  # same sketches everywhere
    ids = [int(s) for _, s in stems_by_dir["text"]]
    assert len(set(ids)) == len(ids) == N_PART * PER and min(ids) > 0


def test_fscoco_file_contents(sample: Path):
    fs = sample / "fscoco"
    for vec in _files(fs / "vector_sketches"):
        pid, stem = vec.parent.name, vec.stem
        arr = np.load(vec, allow_pickle=False)
        assert arr.dtype == np.float32 and arr.ndim == 2 and arr.shape[1] == 3
        assert arr[:, :2].min() >= 0 and arr[:, :2].max() < 256
        assert set(np.unique(arr[:, 2]).tolist()) <= {0.0, 1.0} and arr[-1, 2] == 1.0
        raster = Image.open(fs / "raster_sketches" / pid / f"{stem}.jpg")
        assert raster.format == "JPEG" and raster.mode == "L" and raster.size == (256, 256)
        px = np.asarray(raster)
        assert np.median(px) > 240 and px.min() < 50  # black ink on white
        raw = (fs / "text" / pid / f"{stem}.txt").read_bytes()
        cap = raw.decode("utf-8")
        assert cap and cap == cap.strip() and not raw.endswith(b"\n")
        photo = Image.open(fs / "images" / pid / f"{stem}.jpg")
        assert photo.mode == "RGB" and photo.size == (96, 64)
        points = json.loads((fs / "raw_data" / pid / f"{stem}.json").read_text(encoding="utf-8"))
        assert len(points) == len(arr)
        assert all(set(p) == {"coordinates", "pen_state", "timestamp"} for p in points)
        assert all(p["pen_state"] in ([0, 1, 0], [1, 0, 0]) for p in points)
        xy = np.array([p["coordinates"] for p in points])
        assert xy.min() >= 0 and xy.max() <= 1
        ts = [p["timestamp"] for p in points]
        assert ts == sorted(ts)
        ups = sum(p["pen_state"] == [1, 0, 0] for p in points)
        assert ups <= len(parse_strokes(arr))


def test_fscoco_seg_layout_and_labels(sample: Path):
    fs, seg = sample / "fscoco", sample / "fscoco-seg"
    assert {p.name for p in seg.iterdir()} == {"val", "test", ".sketchseg-sample"}  # + the generator's marker
    used: set[str] = set()
    n = {}
    for split in ("val", "test"):
        d = seg / split
        assert {p.name for p in d.iterdir()} == {"images", "captions", "vector_sketches", "classes", "all_classes.json"}
        stems = [p.stem for p in sorted((d / "classes").iterdir())]
        n[split] = len(stems)
        for sub, suffix in (("images", ".jpg"), ("captions", ".txt"), ("vector_sketches", ".npy")):
            assert [p.stem for p in sorted((d / sub).iterdir())] == stems
            assert all(p.suffix == suffix for p in (d / sub).iterdir())
        for stem in stems:
            (orig,) = list(fs.glob(f"vector_sketches/*/{stem}.npy"))
            if split == "test":
                assert int(orig.parent.name) in TEST_PIDS
            seg_vec = d / "vector_sketches" / f"{stem}.npy"
            assert seg_vec.read_bytes() == orig.read_bytes()
            labels = json.loads((d / "classes" / f"{stem}.json").read_text(encoding="utf-8"))
            assert isinstance(labels, list) and all(isinstance(v, str) for v in labels)
            assert len(labels) == len(load_vector_sketch(seg_vec))
            used |= set(labels)
            assert (d / "captions" / f"{stem}.txt").read_bytes() == (fs / "text" / orig.parent.name / f"{stem}.txt").read_bytes()
            assert Image.open(d / "images" / f"{stem}.jpg").size == (512, 512)
    assert n == {"val": N_PART - len(TEST_PIDS), "test": PER * len(TEST_PIDS)}
    classes = json.loads((seg / "test" / "all_classes.json").read_text(encoding="utf-8"))
    assert (seg / "val" / "all_classes.json").read_text(encoding="utf-8") == json.dumps(classes)
    assert classes[0] == "blank_pixel"
    assert classes[1:] == sorted(set(classes[1:])) and set(classes[1:]) == used


def _content(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in _files(root) if p.suffix in (".npy", ".txt", ".json")}


def test_same_seed_gives_identical_bytes(sample: Path, tmp_path: Path):
    _make(tmp_path)
    a, b = _content(sample), _content(tmp_path)
    assert a.keys() == b.keys() and len(a) > 3 * N_PART * PER
    assert all(a[k] == b[k] for k in a)


def test_parallel_writing_is_identical(sample: Path, tmp_path: Path):
    generate_sample(tmp_path / "fscoco", tmp_path / "fscoco-seg", n_participants=N_PART, sketches_per_participant=PER,
                    seed=0, test_participants=TEST_PIDS, val_per_participant=1, progress=False, workers=2)
    assert _content(tmp_path) == _content(sample)


def test_different_seed_differs(sample: Path, tmp_path: Path):
    _make(tmp_path, seed=1)
    a, b = _content(sample), _content(tmp_path)
    vec_a = sorted(v for k, v in a.items() if k.startswith("fscoco/vector_sketches"))
    vec_b = sorted(v for k, v in b.items() if k.startswith("fscoco/vector_sketches"))
    assert not set(vec_a) & set(vec_b)
    assert {Path(k).stem for k in a} != {Path(k).stem for k in b}


def _mentioned(caption: str) -> set[str]:
    low = caption.lower()
    return {c for c in CATEGORIES if re.search(rf"\b({re.escape(c)}|{re.escape(PLURALS[c])})\b", low)}


def test_scenes_vary_and_cover_many_categories():
    scenes = [make_scene(np.random.default_rng([7, k])) for k in range(300)]
    labels = set().union(*(s.labels for s in scenes))
    assert len(CATEGORIES) >= 14 and len(labels) >= 14 and labels <= set(CATEGORIES)
    assert all(2 <= len(set(s.labels)) <= 5 for s in scenes)
    assert all(len(s.labels) == len(s.strokes) and all(len(p) >= 1 for p in s.strokes) for s in scenes)
    assert len({s.caption for s in scenes}) > 280
    assert len({len(s.strokes) for s in scenes}) > 20


def test_captions_name_the_objects():
    omitted = 0
    for k in range(300):
        s = make_scene(np.random.default_rng([11, k]))
        found, drawn = _mentioned(s.caption), set(s.labels)
        assert found <= drawn, (s.caption, drawn)  # no category noun that is not drawn
        assert len(found) >= len(drawn) - 1, (s.caption, drawn)  # at most one object left out
        omitted += len(found) < len(drawn)
    assert 0.05 < omitted / 300 < 0.3  # about 15% of captions omit one object


def test_plurals_used_for_several_instances():
    plural_seen = False
    for k in range(200):
        s = make_scene(np.random.default_rng([5, k]))
        for c in set(s.labels):
            if PLURALS[c] != c and re.search(rf"\b{re.escape(PLURALS[c])}\b", s.caption.lower()):
                plural_seen = True
    assert plural_seen


def test_refuses_to_write_beside_data_it_did_not_write(tmp_path: Path):
    real = tmp_path / "fscoco"
    (real / "raster_sketches" / "1").mkdir(parents=True)
    (real / "raster_sketches" / "1" / "000000000042.jpg").write_bytes(b"a real sketch")
    with pytest.raises(SketchSegDataError, match=r"fscoco is not empty and was not written by the sample generator"):
        _make(tmp_path)
    assert _files(real) == [real / "raster_sketches" / "1" / "000000000042.jpg"]  # nothing written
    assert not (tmp_path / "fscoco-seg").exists()


def test_writing_again_over_its_own_sample_is_allowed(tmp_path: Path):
    _make(tmp_path)
    assert (tmp_path / "fscoco" / ".sketchseg-sample").is_file() and (tmp_path / "fscoco-seg" / ".sketchseg-sample").is_file()
    first = _content(tmp_path)
    _make(tmp_path)
    assert _content(tmp_path) == first
