"""model/architecture: a checkpoint whose tensors contradict the backbone its metadata names is
refused from the file's header, before that backbone is built (#27: a 2 MB file claiming
ViT-bigG-14 made load_model take 10.7 GB for 65 s before failing)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from sketchseg.model.architecture import architecture_dims, shape_problems
from sketchseg.model import checkpoint
from sketchseg.model.checkpoint import load_model_from_checkpoint, save_checkpoint
from sketchseg.model.errors import CheckpointMismatchError
from sketchseg.model.model import SketchSegModel
from tests.tiny_model import tiny_cfg


def test_dims_of_open_clip_and_sketchseg_configurations():
    assert architecture_dims("ViT-B-16") == {"width": 768, "layers": 12, "embed_dim": 512}
    assert architecture_dims("sketchseg-tiny") == {"width": 96, "layers": 6, "embed_dim": 64}
    assert architecture_dims("no-such-model") is None


def test_shape_problems_hand_case():
    dims = {"width": 8, "layers": 2, "embed_dim": 4}
    fine = {"encoder.visual.ln_pre.weight": [8], "encoder.visual.transformer.resblocks.1.ln_1.bias": [8],
            "encoder.cross_attention.projections.2.text_proj.weight": [8, 4], "threshold.logit": []}
    assert shape_problems(fine, dims) == []
    bad = {"encoder.visual.ln_post.weight": [16], "encoder.visual.transformer.resblocks.2.ln_1.weight": [8],
           "encoder.cross_attention.projections.2.text_proj.weight": [8, 5]}
    problems = shape_problems(bad, dims)
    assert len(problems) == 3
    assert "block 3 of a 2-block" in " ".join(problems) and "visual width is 8" in " ".join(problems)
    assert "text embedding size is 4" in " ".join(problems)


@pytest.mark.parametrize("claimed", ["ViT-bigG-14", "ViT-B-32"])
def test_a_file_claiming_another_backbone_is_refused_before_it_is_built(backbone, tmp_path, monkeypatch, claimed):
    clip, tok, ms = backbone
    path = save_checkpoint(tmp_path / "best.safetensors", SketchSegModel(clip, tok, tiny_cfg(), ms), {"epoch": 1})
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
    meta["model_config"] = json.dumps({**json.loads(meta["model_config"]), "clip_model": claimed, "pretrained": None,
                                       "allow_random_init": True})
    save_file(load_file(str(path)), str(tmp_path / "claims.safetensors"), metadata=meta)

    def no_build(*args, **kwargs):
        raise AssertionError("the claimed backbone was built")

    monkeypatch.setattr(checkpoint, "_build", no_build)
    with pytest.raises(CheckpointMismatchError, match=rf"do not fit the backbone .*{claimed}.*refused before building"):
        load_model_from_checkpoint(tmp_path / "claims.safetensors")


def test_a_fitting_checkpoint_still_loads(backbone, tmp_path):
    clip, tok, ms = backbone
    path = save_checkpoint(tmp_path / "best.safetensors", SketchSegModel(clip, tok, tiny_cfg(), ms), {"epoch": 1})
    torch.manual_seed(0)
    model, cfg, _ = load_model_from_checkpoint(path)
    assert cfg == tiny_cfg()
