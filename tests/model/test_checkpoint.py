"""Checkpoints: safetensors round trip, metadata, mismatch errors."""

from __future__ import annotations

import json

import pytest
import torch

from sketchseg.model.checkpoint import (
    checkpoint_metadata,
    load_model_from_checkpoint,
    load_trainable_state,
    read_checkpoint_metadata,
    save_checkpoint,
    trainable_state_dict,
)
from sketchseg.model.errors import CheckpointMismatchError
from sketchseg.model.model import SketchSegModel
from tests.tiny_model import tiny_cfg


def make(backbone, seed: int, **kw) -> SketchSegModel:
    clip, tok, ms = backbone
    torch.manual_seed(seed)
    return SketchSegModel(clip, tok, tiny_cfg(**kw), ms)


def test_trainable_state_dict_holds_trainable_and_added_parameters(backbone):
    model = make(backbone, 0)
    state = trainable_state_dict(model)
    assert "threshold.logit" in state and "encoder.prompts.tokens" in state
    assert any(k.startswith("encoder.cross_attention.") for k in state)
    assert "encoder.visual.ln_pre.weight" in state
    assert not any(k.startswith("text.") for k in state)
    assert "encoder.visual.conv1.weight" not in state
    assert all(v.device.type == "cpu" for v in state.values())


def test_round_trip(backbone, tmp_path):
    src = make(backbone, 0)
    with torch.no_grad():
        src.threshold.logit.fill_(0.7)
        src.encoder.prompts.tokens.add_(1.0)
        src.encoder.visual.ln_post.weight.mul_(1.5)
    path = save_checkpoint(tmp_path / "ckpt" / "best.safetensors", src, {"epoch": 3, "val_miou": 0.5, "note": "x"})
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["best.safetensors"]  # no tmp left
    saved = trainable_state_dict(src)
    with torch.no_grad():  # src shares the fixture's backbone: reset its LN
        src.encoder.visual.ln_post.weight.div_(1.5)
    assert not torch.equal(make(backbone, 1).encoder.prompts.tokens, saved["encoder.prompts.tokens"])
    torch.manual_seed(1)
    dst, cfg, meta = load_model_from_checkpoint(path)  # built from the checkpoint's own model config
    assert cfg == tiny_cfg() and dst.cfg is cfg
    for key, value in saved.items():
        torch.testing.assert_close(dict(dst.named_parameters())[key].detach(), value)
    assert meta["epoch"] == "3" and meta["note"] == "x" and meta["format"] == "sketchseg-checkpoint-v1"
    assert json.loads(meta["model_config"]) == tiny_cfg().to_dict()
    assert meta["clip_fingerprint"] == dst.clip_fingerprint
    assert read_checkpoint_metadata(path)["val_miou"] == "0.5"


def test_checkpoint_from_another_model_config_is_refused(backbone, tmp_path):
    src = make(backbone, 0, cross_attention=False, num_visual_prompts=2)
    path = save_checkpoint(tmp_path / "a.safetensors", src, {})
    dst = make(backbone, 0)
    with pytest.raises(CheckpointMismatchError) as info:
        load_model_from_checkpoint(path, tiny_cfg(), config_from="conf")  # the given ModelConfig as it is
    msg = str(info.value)
    assert "missing keys" in msg and "cross_attention" in msg
    assert "shape mismatches" in msg and "encoder.prompts.tokens" in msg
    # the reverse direction reports unexpected keys
    path2 = save_checkpoint(tmp_path / "b.safetensors", dst, {})
    with pytest.raises(CheckpointMismatchError, match="unexpected keys"):
        load_model_from_checkpoint(path2, tiny_cfg(cross_attention=False), config_from="conf")
    # non-strict: loads what fits
    load_model_from_checkpoint(path2, tiny_cfg(cross_attention=False), config_from="conf", strict=False)
    # by default an architecture key is never taken from the caller: refused before anything is built
    for given in ({"cross_attention": False}, tiny_cfg(cross_attention=False)):
        with pytest.raises(CheckpointMismatchError, match=r"changes what the checkpoint was built and trained "
                                                          r"with: cross_attention \(True -> False\);"):
            load_model_from_checkpoint(path2, given)
    _, cfg, _ = load_model_from_checkpoint(path2, {"upsample_mode": "bilinear"})
    assert cfg == tiny_cfg(upsample_mode="bilinear")


def test_catalogued_checkpoint(backbone):
    """The training pipeline's ``{"state", "metadata"}`` (``SafetensorsCheckpointDataset``)."""
    src = make(backbone, 0)
    with torch.no_grad():
        src.encoder.prompts.tokens.add_(1.0)
    meta = checkpoint_metadata(src, {"kind": "best", "epoch": "4"})
    catalogued = {"state": trainable_state_dict(src), "metadata": meta}
    model, cfg, got = load_model_from_checkpoint(catalogued, tiny_cfg(upsample_mode="bilinear"))
    assert cfg == tiny_cfg(upsample_mode="bilinear") and got == meta  # an inference setting changed
    torch.testing.assert_close(model.encoder.prompts.tokens, src.encoder.prompts.tokens, rtol=0, atol=0)
    assert load_model_from_checkpoint(catalogued)[1] == tiny_cfg()  # None: the metadata's config
    with pytest.raises(CheckpointMismatchError, match=r"^best does not fit this model: unexpected keys"):
        load_model_from_checkpoint(catalogued, tiny_cfg(cross_attention=False), config_from="conf")
    with pytest.raises(CheckpointMismatchError, match="no 'model_config'"):
        load_model_from_checkpoint({"state": catalogued["state"], "metadata": {"kind": "best", "format": meta["format"]}})
    with pytest.raises(CheckpointMismatchError, match="not a sketchseg checkpoint"):
        load_model_from_checkpoint({"state": catalogued["state"], "metadata": {"kind": "best"}})


def test_in_memory_state_and_reserved_metadata(backbone, tmp_path):
    src = make(backbone, 0)
    dst = make(backbone, 2)
    load_trainable_state(dst, trainable_state_dict(src), source="best")
    torch.testing.assert_close(dst.encoder.prompts.tokens, src.encoder.prompts.tokens)
    bad = trainable_state_dict(src)
    bad.pop("threshold.logit")
    with pytest.raises(CheckpointMismatchError, match="threshold.logit"):
        load_trainable_state(dst, bad, source="best")
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path / "c.safetensors", src, {"model_config": "{}"})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model_from_checkpoint(tmp_path / "nope.safetensors")


def test_relative_clip_weights_are_found_beside_the_checkpoint_not_under_the_cwd(tmp_path, monkeypatch):
    """A checkpoint trained from ``data/06_models/sample/tiny-clip.safetensors`` of project A and
    loaded from project B's folder (which has its own file of that name) gets A's weights."""
    from sketchseg.model.model import build_model
    from sketchseg.pretrain.clip import create_tiny_clip
    from sketchseg.pretrain.weights import save_weights

    rel = "data/06_models/sample/tiny-clip.safetensors"
    for project, seed in (("a", 0), ("b", 1)):
        save_weights(tmp_path / project / rel, create_tiny_clip("sketchseg-tiny", seed)[0].state_dict(), {})
    cfg = tiny_cfg(pretrained=rel, allow_random_init=False)
    monkeypatch.chdir(tmp_path / "a")
    trained = build_model(cfg)
    ckpt = save_checkpoint(tmp_path / "a" / "data/06_models/sample/ours-sample/best.safetensors", trained)
    monkeypatch.chdir(tmp_path / "b")
    namesake = build_model(cfg).weights_fingerprint
    assert namesake != trained.weights_fingerprint
    model, used, _ = load_model_from_checkpoint(ckpt)
    assert model.weights_fingerprint == trained.weights_fingerprint
    assert used.pretrained == str(tmp_path / "a" / rel)
    # an explicit pretrained wins (as given, relative to the cwd)
    model, used, _ = load_model_from_checkpoint(ckpt, {"pretrained": rel})
    assert model.weights_fingerprint == namesake and used.pretrained == rel
