"""sketchseg.app.checkpoints: which checkpoints the page offers and how they are loaded."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

from sketchseg.app import checkpoints as ck
from sketchseg.model.checkpoint import FORMAT, read_checkpoint_metadata, save_checkpoint

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


def test_model_cache_refuses_a_checkpoint_of_another_backbone(tmp_path):
    """Same names and shapes, another backbone (clip_fingerprint): refused, never cached."""
    from sketchseg.model.errors import CheckpointMismatchError
    from tests.model.test_checkpoint_contract import other_backbone_checkpoint

    path = other_backbone_checkpoint(tmp_path / "other.safetensors", clip_model="sketchseg-tiny")
    cache = ck.ModelCache(device="cpu")
    with pytest.raises(CheckpointMismatchError, match=r"backbone architecture differs \(clip_fingerprint"):
        cache.get(path)
    assert not cache._models


def test_model_cache_finds_relative_clip_weights_from_the_checkpoint(tmp_path, monkeypatch):
    """The loader resolves a relative model.pretrained from the checkpoint's folders (the one place:
    model.checkpoint.clip_weights_beside), whatever the working directory."""
    from sketchseg.model.model import build_model
    from sketchseg.pretrain.clip import create_tiny_clip
    from sketchseg.pretrain.weights import save_weights
    from tests.tiny_model import tiny_cfg

    rel = "data/06_models/sample/tiny-clip.safetensors"
    project = tmp_path / "project"
    save_weights(project / rel, create_tiny_clip("sketchseg-tiny", 0)[0].state_dict(), {})
    monkeypatch.chdir(project)
    trained = build_model(tiny_cfg(pretrained=rel, allow_random_init=False))
    ckpt = save_checkpoint(project / "data/06_models/sample/ours-sample/best.safetensors", trained, {"epoch": 1})
    monkeypatch.chdir(tmp_path)  # no such relative file here
    segmenter = ck.ModelCache(device="cpu").get(ckpt)
    assert segmenter.model.weights_fingerprint == trained.weights_fingerprint
    assert segmenter.config.pretrained == str(project / rel)


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
