"""segment node: unique output names and per-file failures (no Kedro runner needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sketchseg.api import SegmentationResult
from sketchseg.pipelines.segment import nodes
from sketchseg.pipelines.segment.nodes import partition_names


def test_output_names_never_collide():
    files = [Path(n) for n in ("a.png", "a.PNG", "b.png", "b.jpg", "b_png.png", "c.png", "C.jpg", "solo.png")]
    names = partition_names(files)
    assert names["solo.png"] == "solo" and names["b.jpg"] == "b_jpg"
    assert len({n.casefold() for n in names.values()}) == len(files)  # unique, even on a case-insensitive disk
    assert {names["b.png"], names["b_png.png"]} == {"b_png", "b_png_2"}
    assert {names["a.PNG"], names["a.png"]} == {"a_png", "a_png_2"}
    assert {names["c.png"], names["C.jpg"]} == {"c_png", "C_jpg"}
    assert partition_names([Path("x.png"), Path("y.png")]) == {"x.png": "x", "y.png": "y"}


def test_out_of_memory_fails_that_file_only(tmp_path, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("big.png", "small.png"):
        Image.fromarray(np.full((32, 32), 255, dtype=np.uint8)).save(folder / name)

    class FakeSegmenter:
        def segment(self, path, cats, **kw):  # noqa: ANN001, ANN003, ANN201
            if Path(path).name == "big.png":
                raise MemoryError("cannot allocate 40 GB")
            raise RuntimeError("reached only for small.png")

    monkeypatch.setattr(nodes, "load_model", lambda *a, **k: FakeSegmenter())
    params = {"input_dir": str(folder), "output_dir": str(tmp_path / "out"), "categories": ["tree"]}
    with pytest.raises(RuntimeError, match="only for small.png"):  # other errors are not swallowed
        nodes.segment_sketches(params)

    class BigOnly(FakeSegmenter):
        def segment(self, path, cats, **kw):  # noqa: ANN001, ANN003, ANN201
            if Path(path).name == "big.png":
                raise MemoryError("cannot allocate 40 GB")
            # what torch's CPU allocator raises: a plain RuntimeError
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(nodes, "load_model", lambda *a, **k: BigOnly())
    table, label_maps, _, _ = nodes.segment_sketches(params)
    table = table.set_index("file")
    assert (table["status"] == "failed").all() and not label_maps
    assert "big.png: out of memory" in table.loc["big.png", "reason"]
    assert "cannot allocate 40 GB" in table.loc["big.png", "reason"]
    assert "small.png: out of memory (RuntimeError" in table.loc["small.png", "reason"]


def test_too_many_categories_fail_that_file_before_inference(tmp_path, monkeypatch):
    """A label-map PNG holds 254 categories: a longer list fails its file at once (no inference, a
    status row), the other files are segmented (issue #17)."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("many.png", "few.png"):
        Image.fromarray(np.full((32, 32), 255, dtype=np.uint8)).save(folder / name)
    (tmp_path / "cats.json").write_text(json.dumps({"many.png": [f"thing {i}" for i in range(255)],
                                                   "few.png": ["tree", "dog"]}))
    seen = []

    class Segmenter:
        def segment(self, path, cats, **kw):  # noqa: ANN001, ANN003, ANN201
            seen.append(Path(path).name)
            grey = np.ones((32, 32), np.float32)
            return SegmentationResult(label_map=np.full((32, 32), -1), categories=list(cats),
                                      similarity=np.zeros((len(cats), 32, 32), np.float32), ink=grey < 0.5, grey=grey)

    monkeypatch.setattr(nodes, "load_model", lambda *a, **k: Segmenter())
    params = {"input_dir": str(folder), "output_dir": str(tmp_path / "out"),
              "categories_file": str(tmp_path / "cats.json")}
    table, label_maps, _, _ = nodes.segment_sketches(params)
    table = table.set_index("file")
    assert seen == ["few.png"]
    assert table.loc["few.png", "status"] == "ok" and list(label_maps) == ["few"]
    assert table.loc["many.png", "status"] == "failed" and table.loc["many.png", "n_categories"] == 255
    assert table.loc["many.png", "reason"] == ("255 categories: a label-map PNG holds at most 254; "
                                               "segment this sketch with fewer categories")


def test_missing_checkpoint_and_bad_numbers_are_told_in_one_line(tmp_path):
    """No checkpoint yet: say which command makes one (with the run's --env); a threshold that is
    no number is named."""
    from sketchseg.errors import SketchSegConfigError, SketchSegDataError
    from sketchseg.pipelines.environment import set_run_env

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.full((32, 32), 255, dtype=np.uint8)).save(folder / "a.png")
    params = {"input_dir": str(folder), "output_dir": str(tmp_path / "out"), "categories": ["tree"],
              "checkpoint": str(tmp_path / "none.safetensors")}
    set_run_env("sample")
    try:
        with pytest.raises(SketchSegDataError, match=r"no trained checkpoint yet: .*none.safetensors does not exist; "
                                                     r"run `kedro run --pipelines=train --env=sample` first"):
            nodes.segment_sketches(params)
    finally:
        set_run_env(None)
    with pytest.raises(SketchSegConfigError, match=r"segment.isolation_threshold must be a number, got 'high'"):
        nodes.segment_sketches({**params, "isolation_threshold": "high"})
