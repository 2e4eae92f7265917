"""The checkpoint contract (issue #25 §1): one writer and one reader, the backbone fingerprint in
every checkpoint and checked on every load, and an explicit choice of whose configuration wins."""

from __future__ import annotations

import logging

import pytest
import torch

from sketchseg.model.checkpoint import (
    CONFIG_FROM,
    checkpoint_metadata,
    clip_weights_beside,
    load_model_from_checkpoint,
    read_checkpoint,
    save_checkpoint,
    trainable_state_dict,
    write_checkpoint,
)
from sketchseg.model.config import INFERENCE_KEYS, OVERRIDABLE_KEYS, ModelConfig
from sketchseg.model.errors import CheckpointMismatchError, ModelConfigError
from sketchseg.model.model import build_model
from tests.tiny_model import tiny_cfg


def other_backbone_checkpoint(path, **cfg):
    """A tiny checkpoint whose ``clip_fingerprint`` is that of the same model with the other
    activation (QuickGELU instead of GELU): same names and shapes, another backbone."""
    model = build_model(tiny_cfg(**cfg))
    quick = build_model(tiny_cfg(**cfg, quick_gelu=True))
    assert quick.clip_fingerprint != model.clip_fingerprint  # the activation is in the fingerprint
    meta = {**checkpoint_metadata(model, {"kind": "best", "epoch": 1}), "clip_fingerprint": quick.clip_fingerprint}
    return write_checkpoint(path, trainable_state_dict(model), meta)


def test_every_writer_records_the_fingerprint_and_the_one_writer_refuses_without(tmp_path):
    from sketchseg.engine.run import checkpoint_metadata as run_metadata
    from sketchseg.pipelines.datasets import SafetensorsCheckpointDataset

    model = build_model(tiny_cfg())
    meta = run_metadata(model, epoch=2, metric=12.5, variant="v", kind="best", torch_threads=1)
    assert meta["clip_fingerprint"] == model.clip_fingerprint and meta["format"] == "sketchseg-checkpoint-v1"
    ds = SafetensorsCheckpointDataset(str(tmp_path / "pipeline.safetensors"))
    ds.save({"state": trainable_state_dict(model), "metadata": meta})
    loaded = ds.load()
    assert loaded["metadata"] == read_checkpoint(tmp_path / "pipeline.safetensors")["metadata"] == meta
    # the same state and metadata through save_checkpoint: the same bytes (one writer, sorted metadata)
    direct = save_checkpoint(tmp_path / "direct.safetensors", model, {k: v for k, v in meta.items()
                                                                      if k in ("epoch", "val_miou", "variant", "kind",
                                                                               "torch_threads")})
    assert direct.read_bytes() == (tmp_path / "pipeline.safetensors").read_bytes()
    # metadata of an older writer (no fingerprint) is not written
    old = {k: v for k, v in meta.items() if k != "clip_fingerprint"}
    with pytest.raises(ValueError, match="lacks clip_fingerprint"):
        write_checkpoint(tmp_path / "old.safetensors", trainable_state_dict(model), old)
    with pytest.raises(Exception, match="lacks clip_fingerprint"):  # Kedro wraps it in a DatasetError
        SafetensorsCheckpointDataset(str(tmp_path / "old.safetensors")).save(
            {"state": trainable_state_dict(model), "metadata": old})
    assert not (tmp_path / "old.safetensors").exists()


def test_a_checkpoint_of_another_backbone_is_refused_from_a_file_and_from_the_catalog(tmp_path):
    path = other_backbone_checkpoint(tmp_path / "best.safetensors")
    with pytest.raises(CheckpointMismatchError, match=r"backbone architecture differs \(clip_fingerprint"):
        load_model_from_checkpoint(path)
    with pytest.raises(CheckpointMismatchError, match=r"backbone architecture differs \(clip_fingerprint"):
        load_model_from_checkpoint(read_checkpoint(path))  # what the evaluation and report nodes get
    # the real case: trained with QuickGELU, built with GELU (same shapes); conf's configuration asked for
    quick = build_model(tiny_cfg(quick_gelu=True))
    saved = save_checkpoint(tmp_path / "quick.safetensors", quick, {"epoch": 1})
    with pytest.raises(CheckpointMismatchError, match="backbone architecture differs"):
        load_model_from_checkpoint(saved, tiny_cfg(quick_gelu=False), config_from="conf")
    # ... and by default the change of quick_gelu is refused before anything is built
    with pytest.raises(CheckpointMismatchError, match=r"quick_gelu \(True -> False\)"):
        load_model_from_checkpoint(saved, tiny_cfg(quick_gelu=False))
    assert load_model_from_checkpoint(saved)[0].clip_fingerprint == quick.clip_fingerprint


def test_whose_configuration_is_an_explicit_choice(tmp_path, caplog):
    model = build_model(tiny_cfg())
    path = save_checkpoint(tmp_path / "best.safetensors", model, {"epoch": 1})
    assert CONFIG_FROM == ("checkpoint", "conf") and set(INFERENCE_KEYS) <= set(OVERRIDABLE_KEYS)
    with pytest.raises(ModelConfigError, match="config_from must be one of"):
        load_model_from_checkpoint(path, config_from="mine")
    with pytest.raises(ModelConfigError, match="needs the model configuration"):
        load_model_from_checkpoint(path, config_from="conf")
    # the default: the checkpoint's own; a whole ModelConfig (conf's) may change inference settings,
    # said on one line
    conf = tiny_cfg(upsample_mode="bilinear", inference_normalization="minmax")
    with caplog.at_level(logging.INFO, logger="sketchseg.model.checkpoint"):
        _, cfg, _ = load_model_from_checkpoint(path, conf)
    assert cfg == conf
    said = [r.getMessage() for r in caplog.records if "model configuration with" in r.getMessage()]
    assert said == [f"{path}: the checkpoint's model configuration with inference_normalization 'none' -> 'minmax', "
                    "upsample_mode 'bicubic' -> 'bilinear'"]
    # an architecture key: refused in one line naming it, unless conf's configuration is asked for
    for key, value in (("vv_blocks", [4, 5, 6]), ("num_visual_prompts", 2), ("image_size", 128)):
        with pytest.raises(CheckpointMismatchError) as info:
            load_model_from_checkpoint(path, tiny_cfg(**{key: value}))
        assert f"{key} (" in str(info.value) and "config_from='conf'" in str(info.value)
        assert "\n" not in str(info.value)
    _, cfg, _ = load_model_from_checkpoint(path, tiny_cfg(vv_blocks=[4, 5, 6]), config_from="conf")
    assert cfg.vv_blocks == [4, 5, 6]  # the same parameters: loads, as asked
    # a training-only key is the checkpoint's too; a mapping of an unknown key is refused
    with pytest.raises(CheckpointMismatchError, match=r"margin \(0.3 -> 0.5\)"):
        load_model_from_checkpoint(path, {"margin": 0.5})
    with pytest.raises(ModelConfigError, match="unknown model config key"):
        load_model_from_checkpoint(path, {"upsampel_mode": "bilinear"})


def test_no_model_config_needs_conf(tmp_path):
    model = build_model(tiny_cfg())
    meta = {k: v for k, v in checkpoint_metadata(model).items()}
    catalogued = {"state": trainable_state_dict(model), "metadata": {**meta, "model_config": ""}}
    with pytest.raises(CheckpointMismatchError, match="no 'model_config'"):
        load_model_from_checkpoint(catalogued, tiny_cfg())
    assert load_model_from_checkpoint(catalogued, tiny_cfg(), config_from="conf")[1] == tiny_cfg()
    assert isinstance(load_model_from_checkpoint(catalogued, tiny_cfg().to_dict(), config_from="conf")[1], ModelConfig)


def test_relative_clip_weights_resolved_in_one_place(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rel = "data/06_models/sample/tiny-clip.safetensors"
    # a copied checkpoint with the backbone beside it
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "tiny-clip.safetensors").write_bytes(b"x")
    assert clip_weights_beside(rel, tmp_path / "copy" / "best.safetensors") == tmp_path / "copy" / "tiny-clip.safetensors"
    # the project's own checkpoint read from another folder: the path under a folder above it
    project = tmp_path / "project"
    ckpt = project / "data" / "06_models" / "sample" / "x" / "best.safetensors"
    (project / rel).parent.mkdir(parents=True)
    (project / rel).write_bytes(b"x")
    assert clip_weights_beside(rel, ckpt) == project / rel
    # an open_clip tag, an absolute path, a missing file: nothing found
    assert clip_weights_beside("openai", ckpt) is None and clip_weights_beside(None, ckpt) is None
    assert clip_weights_beside("/abs/w.safetensors", ckpt) is None
    assert clip_weights_beside("nowhere/w.bin", ckpt) is None
    torch.manual_seed(0)
