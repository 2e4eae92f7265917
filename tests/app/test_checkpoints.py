"""sketchseg.app.checkpoints: which checkpoints the page offers and how they are loaded."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from sketchseg.app import checkpoints as ck
from sketchseg.model.checkpoint import FORMAT, read_checkpoint_metadata

from .conftest import make_checkpoint


def test_find_checkpoints_offers_sketchseg_checkpoints_only(tmp_path):
    models = tmp_path / "data" / "06_models"
    make_checkpoint(models / "run" / "last.safetensors")
    make_checkpoint(models / "run" / "best.safetensors")
    (models / "sample").mkdir(parents=True)
    save_file({"w": torch.zeros(2)}, str(models / "sample" / "tiny-clip.safetensors"))  # a backbone: no format
    (models / "broken.safetensors").write_bytes(b"garbage")
    found = ck.find_checkpoints(models, extra=["/elsewhere/authors.safetensors"])
    assert found == ["/elsewhere/authors.safetensors", str(models / "run" / "best.safetensors"),
                     str(models / "run" / "last.safetensors")]
    assert ck.find_checkpoints(tmp_path / "missing") == []
    assert ck.is_checkpoint(models / "run" / "best.safetensors") and not ck.is_checkpoint(models / "broken.safetensors")


def test_default_checkpoint_prefers_the_given_one_then_the_sample():
    sample = str(ck.SAMPLE_CHECKPOINT)
    assert ck.default_checkpoint([]) is None
    assert ck.default_checkpoint(["a.safetensors", sample]) == "a.safetensors"
    assert ck.default_checkpoint([sample, "b.safetensors"]) == sample


def test_the_demos_model_comes_first_beside_other_variants(tmp_path, monkeypatch):
    """Issue #24: a grid's or a real run's variants never become the app's default model."""
    monkeypatch.chdir(tmp_path)
    for folder in ("ours", "sample/ours", "sample/ours-sample", "sample/wo_vv"):
        path = ck.MODELS_DIR / folder / "best.safetensors"
        path.parent.mkdir(parents=True)
        save_file({"w": torch.zeros(1)}, str(path), metadata={"format": FORMAT, "variant": folder})
    found = ck.find_checkpoints()
    assert found[0] == str(ck.SAMPLE_CHECKPOINT) == "data/06_models/sample/ours-sample/best.safetensors"
    assert ck.default_checkpoint(found) == str(ck.SAMPLE_CHECKPOINT) and len(found) == 4


def _checkpoint_naming_backbone(path, pretrained):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": torch.zeros(1)}, str(path), metadata={"format": FORMAT, "model_config": json.dumps(
        {"clip_model": "sketchseg-tiny", "pretrained": pretrained})})
    return path


def test_relative_backbone_path_is_found_beside_or_above_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rel = "data/06_models/sample/tiny-clip.safetensors"
    # a copied checkpoint with the backbone beside it
    copy = _checkpoint_naming_backbone(tmp_path / "copy" / "best.safetensors", rel)
    (tmp_path / "copy" / "tiny-clip.safetensors").write_bytes(b"x")
    assert ck.pretrained_override(copy) == {"pretrained": str(tmp_path / "copy" / "tiny-clip.safetensors")}
    # the project's own checkpoint read from another folder: the path under a folder above it
    project = tmp_path / "project"
    ckpt = _checkpoint_naming_backbone(project / "data" / "06_models" / "sample" / "x" / "best.safetensors", rel)
    (project / rel).parent.mkdir(parents=True, exist_ok=True)
    (project / rel).write_bytes(b"x")
    assert ck.pretrained_override(ckpt) == {"pretrained": str(project / rel)}
    # from the project folder the recorded path works as it is: no override
    monkeypatch.chdir(project)
    assert ck.pretrained_override(ckpt) is None
    # an open_clip tag, an absolute path, a missing file: nothing to do
    assert ck.pretrained_override(_checkpoint_naming_backbone(tmp_path / "t.safetensors", "openai")) is None
    assert ck.pretrained_override(_checkpoint_naming_backbone(tmp_path / "a.safetensors", "/abs/w.safetensors")) is None
    assert ck.pretrained_override(_checkpoint_naming_backbone(tmp_path / "m.safetensors", "nowhere/w.bin")) is None


def test_model_cache_loads_once_and_keeps_the_latest(tmp_path, tiny_checkpoint):
    other = make_checkpoint(tmp_path / "other.safetensors", seed=6)
    third = make_checkpoint(tmp_path / "third.safetensors", seed=7)
    cache = ck.ModelCache(device="cpu", size=2)
    a = cache.get(tiny_checkpoint)
    assert cache.get(str(tiny_checkpoint)) is a
    b = cache.get(other)
    cache.get(third)                                       # evicts the least recently used: a
    assert cache.get(other) is b and cache.get(tiny_checkpoint) is not a
    assert read_checkpoint_metadata(tiny_checkpoint)["epoch"] == a.metadata["epoch"] == "1"
    with pytest.raises(FileNotFoundError, match=r"^checkpoint .*missing.safetensors does not exist$"):
        cache.get(tmp_path / "missing.safetensors")
    assert os.path.isfile(tiny_checkpoint)
