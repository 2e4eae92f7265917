"""Issue #27 (held up under abuse), ingestion: files that cannot or must not be read quarantine
their one sketch (symlink loops, FIFOs, directories under a file's name, oversize files, rasters
with too many pixels), through the ingestion pipeline's node."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from sketchseg.errors import SketchSegConfigError
from sketchseg.pipelines.ingestion.nodes import ingest

N_PART, PER = 3, 4


@pytest.fixture()
def tree(make_sample, tmp_path: Path) -> Path:
    return make_sample(N_PART, PER, seed=5, test_participants=(1,), val_per_participant=1,
                       write_photos=False).copy(tmp_path / "t")


def _run(root: Path, **data):
    params = {"fscoco_root": str(root / "fscoco"), "fscoco_seg_root": str(root / "fscoco-seg"),
              "max_rejection_rate": 1.0, "workers": 1, **data}
    manifest, quarantine, _ = ingest(params)
    return manifest, quarantine


def _stems(root: Path, pid: int = 2) -> list[str]:
    return sorted(p.stem for p in (root / "fscoco" / "text" / str(pid)).glob("*.txt"))


def _file(root: Path, kind: str, stem: str, pid: int = 2) -> Path:
    folder, suffix = {"raster": ("raster_sketches", ".jpg"), "vector": ("vector_sketches", ".npy"),
                      "text": ("text", ".txt")}[kind]
    return root / "fscoco" / folder / str(pid) / f"{stem}{suffix}"


def _only_sketch_row(quarantine, path: Path):
    rows = quarantine[quarantine["kind"] == "sketch"]
    assert len(rows) == 1, rows.to_dict("records")
    row = rows.iloc[0]
    assert row["path"] == str(path)
    return row


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["text", "vector", "raster"])
def test_a_symlink_loop_quarantines_its_one_sketch(tree: Path, kind: str):
    stem = _stems(tree)[0]
    p = _file(tree, kind, stem)
    p.unlink()
    p.symlink_to(p.name)  # x -> x: ELOOP on every access
    manifest, quarantine = _run(tree)
    row = _only_sketch_row(quarantine, p)
    assert "symbolic link loop" in row["reason"]
    assert len(manifest) == N_PART * PER - 1


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["text", "vector", "raster"])
def test_a_fifo_is_never_read(tree: Path, kind: str):
    """A named pipe under a sketch file's name would block the read for ever: quarantined unread."""
    stem = _stems(tree)[1]
    p = _file(tree, kind, stem)
    p.unlink()
    os.mkfifo(p)
    manifest, quarantine = _run(tree)
    row = _only_sketch_row(quarantine, p)
    assert "FIFO" in row["reason"] and "not a regular file" in row["reason"]
    assert len(manifest) == N_PART * PER - 1


@pytest.mark.timeout(120)
def test_a_looping_participant_folder_is_one_row(tree: Path):
    loop = tree / "fscoco" / "text" / "99"
    loop.symlink_to("99")
    manifest, quarantine = _run(tree)
    assert len(manifest) == N_PART * PER
    (row,) = quarantine.itertuples()
    assert row.path == str(loop) and row.kind == "file" and "symbolic links" in row.reason


@pytest.mark.timeout(120)
@pytest.mark.parametrize("what", ["loop", "fifo", "too large"])
def test_annotation_files_that_must_not_be_read(tree: Path, what: str):
    seg = tree / "fscoco-seg" / "test" / "classes"
    p = sorted(seg.glob("*.json"))[0]
    p.unlink()
    if what == "loop":
        p.symlink_to(p.name)
    elif what == "fifo":
        os.mkfifo(p)
    else:
        p.write_text('["tree"' + ', "tree"' * 400 + "]")
    manifest, quarantine = _run(tree, max_file_bytes={"labels": 1000})
    (row,) = quarantine.itertuples()
    assert row.kind == "annotation" and row.path == str(p)
    expected = {"loop": "symbolic link loop", "fifo": "FIFO", "too large": "label file is too large"}[what]
    assert expected in row.reason and "not scored" in row.reason
    assert len(manifest) == N_PART * PER


@pytest.mark.timeout(120)
def test_an_oversize_caption_is_quarantined_before_it_is_read(tree: Path, monkeypatch):
    stem = _stems(tree)[2]
    p = _file(tree, "text", stem)
    p.write_text("a tree and a house " * 4000)  # 76 KB of caption, over the 64 KB default
    manifest, quarantine = _run(tree)
    row = _only_sketch_row(quarantine, p)
    assert row["reason"] == "caption file is too large: 76000 bytes, above the limit of 65536 bytes"
    assert len(manifest) == N_PART * PER - 1


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["vector", "raster"])
def test_every_file_type_has_a_size_cap_from_the_parameters(tree: Path, kind: str):
    stem = _stems(tree)[0]
    p = _file(tree, kind, stem)
    cap = p.stat().st_size - 1
    manifest, quarantine = _run(tree, max_file_bytes={kind: cap})
    rows = quarantine[quarantine["kind"] == "sketch"]
    assert str(p) in rows["path"].tolist()
    reason = rows.set_index("path").loc[str(p), "reason"]
    assert f"is too large: {cap + 1} bytes, above the limit of {cap} bytes" in reason


def test_an_unknown_file_type_cap_is_a_config_error(tree: Path):
    with pytest.raises(SketchSegConfigError, match=r"data.max_file_bytes: unknown file type\(s\) \['captions'\]"):
        _run(tree, max_file_bytes={"captions": 10})


@pytest.mark.timeout(120)
def test_a_raster_with_too_many_pixels_is_refused_from_its_header(tree: Path, monkeypatch):
    """A small PNG of 8000 x 8000 1-bit pixels (64 MP) is over the 40 MP default: refused before decoding."""
    stem = _stems(tree)[3]
    p = _file(tree, "raster", stem)
    Image.new("1", (8000, 8000), 1).save(p, format="PNG")
    assert p.stat().st_size < 1_000_000

    def no_decode(self, *a, **k):  # the header is enough: decoding 64 MP would be the bug
        if self.size == (8000, 8000):
            raise AssertionError("decoded a raster over the pixel cap")
        return original(self, *a, **k)

    from PIL import PngImagePlugin
    original = PngImagePlugin.PngImageFile.load
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decode)
    manifest, quarantine = _run(tree)
    row = _only_sketch_row(quarantine, p)
    assert "8000x8000 pixels (64.0 MP) is too large; the limit is 40.0 MP" in row["reason"]
    assert len(manifest) == N_PART * PER - 1


def test_real_sized_files_pass_the_default_caps(tree: Path):
    manifest, quarantine = _run(tree, max_rejection_rate=0.0)
    assert len(quarantine) == 0 and len(manifest) == N_PART * PER


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["text", "vector", "raster"])
def test_a_file_without_permission_is_quarantined(tree: Path, kind: str, monkeypatch):
    """EACCES (the tests run as root, who may read anything: the refusal is simulated at os.stat)."""
    import errno

    stem = _stems(tree)[0]
    p = _file(tree, kind, stem)
    real_stat = os.stat

    def stat(path, *a, **k):
        if os.fspath(path) == str(p):
            raise PermissionError(errno.EACCES, "Permission denied", str(p))
        return real_stat(path, *a, **k)

    monkeypatch.setattr(os, "stat", stat)
    manifest, quarantine = _run(tree)
    row = _only_sketch_row(quarantine, p)
    assert "cannot be read: Permission denied" in row["reason"]
    assert len(manifest) == N_PART * PER - 1
