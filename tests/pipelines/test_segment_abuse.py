"""Issue #27 (held up under abuse), the segment pipeline through Kedro's runner: outputs that cannot
be written are told in one line before any inference; outputs are written atomically; a sketch
over the pixel limit is a failed row, a FIFO or a symlink loop a skipped one, never opened."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageDraw

from sketchseg.model.checkpoint import save_checkpoint
from sketchseg.model.config import ModelConfig
from sketchseg.model.model import build_model
from sketchseg.pipelines.datasets import AtomicCSVDataset, AtomicImageDataset
from sketchseg.pipelines.segment import nodes
from tests.pipelines.kedro_utils import run

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TINY = dict(clip_model="sketchseg-tiny", pretrained=None, allow_random_init=True, image_size=64,
            vv_blocks=[4, 5, 6], cross_attention_layers=[4, 5, 6], category_loss_layers=[4, 5, 6])


@pytest.fixture()
def setup(kedro_project):
    torch.manual_seed(0)
    ckpt = save_checkpoint(kedro_project / "ckpt" / "tiny.safetensors", build_model(ModelConfig(**TINY)), {"epoch": 1})
    folder = kedro_project / "sketches"
    folder.mkdir()
    im = Image.new("L", (120, 80), 255)
    ImageDraw.Draw(im).rectangle([10, 10, 60, 60], outline=0, width=3)
    im.save(folder / "house.png")
    Image.new("1", (7000, 7000), 1).save(folder / "bomb.png")  # 49 MP in a few kB
    return kedro_project, {"segment.checkpoint": str(ckpt), "segment.input_dir": str(folder),
                           "segment.categories": ["house", "tree"]}


def _loaded_a_model(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = nodes.load_model
    monkeypatch.setattr(nodes, "load_model", lambda *a, **k: calls.append("load") or real(*a, **k))
    return calls


@pytest.mark.parametrize("make, expected", [
    (lambda out: out.write_text("precious"), "segment.output_dir {out} is a file, not a folder"),
    (lambda out: (out / "segmentation.csv").mkdir(parents=True), "{out}/segmentation.csv is a folder"),
    (lambda out: (out.mkdir(), (out / "overlays").write_text("x")), "{out}/overlays is a file"),
    (lambda out: (out.parent.mkdir(exist_ok=True), (out.parent / "file").write_text("x")),
     "its parent {out.parent}/file is a file"),
])
def test_unwritable_outputs_are_one_line_before_inference(setup, monkeypatch, make, expected):
    project, params = setup
    out = project / "results" / "seg"
    target = out if "parent" not in expected else out.parent / "file" / "seg"
    out.parent.mkdir(parents=True, exist_ok=True)
    make(out)
    calls = _loaded_a_model(monkeypatch)
    with pytest.raises(Exception) as info:
        run(project, "segment", params={**params, "segment.output_dir": str(target)})
    message = str(info.value)
    assert expected.format(out=out) in message, message
    assert len(message.splitlines()) == 1 and "FileExistsError" not in message
    assert calls == []  # refused before the model was loaded: no finished work to lose
    if expected.startswith("segment.output_dir {out} is a file"):
        assert out.read_text() == "precious"


def test_a_sketch_over_the_pixel_limit_and_unreadable_entries_are_rows(setup):
    import os

    project, params = setup
    out = project / "results" / "seg"
    os.mkfifo(Path(params["segment.input_dir"]) / "pipe.png")  # would block a reader for ever
    (Path(params["segment.input_dir"]) / "loop.png").symlink_to("loop.png")
    run(project, "segment", params={**params, "segment.output_dir": str(out)})
    table = pd.read_csv(out / "segmentation.csv").set_index("file")
    assert table.loc["pipe.png", "status"] == "skipped" and "FIFO" in table.loc["pipe.png", "reason"]
    assert table.loc["loop.png", "status"] == "skipped" and "symbolic link loop" in table.loc["loop.png", "reason"]
    assert table.loc["house.png", "status"] == "ok"
    assert table.loc["bomb.png", "status"] == "failed"
    assert "7000x7000 pixels (49.0 MP) is too large; the limit is 40.0 MP" in table.loc["bomb.png", "reason"]
    assert (out / "label_maps" / "house.png").is_file()
    assert not list(out.rglob("*.tmp"))


def test_saves_are_atomic(tmp_path):
    """A save that fails half-way leaves the previous file, never a truncated or 0-byte one."""
    csv = tmp_path / "out" / "segmentation.csv"
    ds = AtomicCSVDataset(filepath=str(csv), save_args={"index": False})
    ds.save(pd.DataFrame({"file": ["a.png"], "status": ["ok"]}))
    before = csv.read_text()

    class Half(pd.DataFrame):
        def to_csv(self, path_or_buf=None, **kw):  # noqa: ANN001, ANN003, ANN201
            path_or_buf.write("file,sta")
            raise OSError(28, "No space left on device")

    with pytest.raises(Exception, match="No space left"):
        ds.save(Half({"file": ["b.png"]}))
    assert csv.read_text() == before
    fresh = tmp_path / "out" / "fresh.csv"
    with pytest.raises(Exception, match="No space left"):
        AtomicCSVDataset(filepath=str(fresh)).save(Half({"file": ["b.png"]}))
    assert not fresh.exists()
    assert sorted(p.name for p in csv.parent.iterdir()) == ["segmentation.csv"]  # no temporary file left

    png = tmp_path / "out" / "a.png"
    AtomicImageDataset(filepath=str(png)).save(Image.fromarray(np.zeros((4, 4), np.uint8)))
    with Image.open(png) as im:
        assert im.size == (4, 4)
