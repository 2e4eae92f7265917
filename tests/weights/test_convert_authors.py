"""``python -m sketchseg.weights convert-authors``: key mapping, refusals, the converted checkpoint.

Fast: the authors' layout built for the tiny architecture (``authors_layout.py``) with random
weights from ``tests/conformance/authors_recipe.py``. The ViT-B/16 conformance against their own
code is ``tests/conformance/test_authors_checkpoint.py`` (slow).
"""

from __future__ import annotations

import pytest
import torch

from sketchseg.model.checkpoint import load_model_from_checkpoint, read_checkpoint_metadata
from sketchseg.model.config import ModelConfig
from sketchseg.model.model import build_model
from sketchseg.weights.__main__ import main
from sketchseg.weights.authors import AUTHORS_MODEL, NotAuthorsCheckpoint, convert_authors_checkpoint
from tests.conformance import authors_recipe as recipe
from tests.weights.authors_layout import authors_layout

TINY = {**AUTHORS_MODEL, "clip_model": "sketchseg-tiny", "pretrained": None, "allow_random_init": True,
        "image_size": 64, "vv_blocks": [1, 2, 3, 4, 5, 6], "category_loss_layers": [6], "cross_attention_layers": [6]}


@pytest.fixture(scope="module")
def layout() -> dict[str, tuple[int, ...]]:
    return authors_layout(build_model(ModelConfig.from_dict(TINY)))


@pytest.fixture(scope="module")
def theirs(layout) -> dict[str, torch.Tensor]:
    return recipe.regenerate(list(layout), list(layout.values()), 7)


@pytest.fixture(scope="module")
def converted(theirs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("conv")
    src = recipe.write_checkpoint(theirs, folder / "sketch_seg_best_miou.pth")
    conv = convert_authors_checkpoint(src, folder / "authors.safetensors", clip_model="sketchseg-tiny")
    return folder / "authors.safetensors", conv


def test_layout_is_theirs(layout):
    assert "visual.prompt_embeddings" in layout and layout["visual.prompt_embeddings"] == (1, 3, 96)
    assert "visual.transformer.resblocks.0.attn.qkv.weight" in layout and "visual.attn.qkv.weight" in layout
    assert "visual.transformer.ca.encoder.layer2.0.sublayer.1.norm.a" in layout
    assert "transformer.ca.text_projection.weight" in layout and "token_embedding.weight" in layout


def test_every_weight_lands_where_it_belongs(converted, theirs):
    path, conv = converted
    model, cfg, meta = load_model_from_checkpoint(path)
    params = dict(model.named_parameters())
    assert set(conv.state) == set(params)
    for name, key in conv.sources.items():
        want = theirs[key].reshape(params[name].shape)
        assert torch.equal(params[name].detach(), want), (name, key)
    blocks = model.encoder.visual.transformer.resblocks
    assert torch.equal(blocks[0].attn.in_proj_weight.detach(), theirs["visual.attn.qkv.weight"])
    for i, block in enumerate(blocks):  # every block keeps its own attention (the alias is block 0's here)
        assert torch.equal(block.attn.in_proj_weight.detach(), theirs[f"visual.transformer.resblocks.{i}.attn.qkv.weight"])
    assert torch.equal(blocks[3].attn.out_proj.bias.detach(), theirs["visual.transformer.resblocks.3.attn.proj.bias"])
    assert torch.equal(model.encoder.authors_cross_attention.k_proj.weight.detach(),
                       theirs["visual.transformer.ca.encoder.layer2.0.self_attn.linears.1.weight"])
    assert torch.equal(model.text.text_projection.detach(), theirs["text_projection"])
    assert sorted(conv.dropped) == sorted(k for k in theirs if k.startswith((
        "visual.transformer.ca.encoder.layers.", "visual.transformer.ca.encoder.layer1.", "transformer.ca.")))
    assert meta["clip_weights"] == "included" and meta["kind"] == "authors"
    assert cfg.test_time_cross_attention == "authors" and cfg.feature_normalization == "authors_test"
    assert cfg.input_resize == "authors_bicubic_rgb8"  # their preprocessing (tests/conformance)
    assert cfg.quick_gelu is True and cfg.num_visual_prompts == 3 and cfg.vv_blocks == [1, 2, 3, 4, 5, 6]


def test_converted_checkpoint_needs_no_clip_download_and_segments(converted):
    from sketchseg.api import load_model

    path, _ = converted
    meta = read_checkpoint_metadata(path)
    assert '"pretrained": "openai"' in meta["model_config"]  # the text tower is OpenAI's, in the file
    segmenter = load_model(path, device="cpu")  # HF_HUB_OFFLINE: nothing is fetched
    image = torch.ones(1, 3, 64, 64)
    image[:, :, 20:44, 10:54] = 0.0
    maps = segmenter.model.segment(image, [["tree", "house", "sun"]], size=64)[0]
    assert maps.shape == (3, 64, 64) and torch.isfinite(maps).all()
    assert maps.amin() >= 0.0 and maps.amax() <= 1.0  # min-max normalised, as their test.py


def test_a_missing_weight_is_named(theirs, tmp_path):
    src = recipe.write_checkpoint({k: v for k, v in theirs.items() if k != "ln_final.bias"}, tmp_path / "a.pth")
    with pytest.raises(NotAuthorsCheckpoint, match=r"missing: \['text.ln_final.bias'\]"):
        convert_authors_checkpoint(src, tmp_path / "a.safetensors", clip_model="sketchseg-tiny")
    assert not (tmp_path / "a.safetensors").exists()


def test_an_unknown_key_is_named(theirs, tmp_path):
    src = recipe.write_checkpoint({**theirs, "visual.extra_head.weight": torch.zeros(2)}, tmp_path / "a.pth")
    with pytest.raises(NotAuthorsCheckpoint, match="cannot map: \\['visual.extra_head.weight'\\]"):
        convert_authors_checkpoint(src, tmp_path / "a.safetensors", clip_model="sketchseg-tiny")


@pytest.mark.parametrize("content", ["garbage", "plain_clip", "not_tensors"])
def test_other_files_are_refused_in_one_line(content, theirs, tmp_path, capsys):
    src = tmp_path / "other.pth"
    if content == "garbage":
        src.write_bytes(b"\x80\x04not a checkpoint")
    elif content == "plain_clip":  # a CLIP state dict: no prompts, no cross-attention
        torch.save({k: v for k, v in theirs.items() if not k.startswith(("visual.prompt", "visual.transformer.ca"))},
                   src)
    else:
        torch.save({"epoch": 3}, src)
    assert main(["convert-authors", str(src), str(tmp_path / "out.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {src} is not the authors' checkpoint") and "\n" not in err
    assert "Re-running" not in err and "weights_only` set to `False" not in err  # no advice to load it unsafely
    assert not (tmp_path / "out.safetensors").exists()


def test_pickled_code_is_never_run(tmp_path, capsys):
    class Boom:
        def __reduce__(self):
            return (exec, ("open(%r, 'w').write('ran')" % str(tmp_path / "ran"),))

    src = tmp_path / "evil.pth"
    torch.save({"visual.conv1.weight": Boom()}, src)
    assert main(["convert-authors", str(src), str(tmp_path / "out.safetensors")]) == 2
    assert not (tmp_path / "ran").exists()
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {src} holds code or Python objects other than tensors (Unsupported global: GLOBAL exec): "
                   "it was not loaded (sketchseg never unpickles more than tensors); it is not the authors' checkpoint")


def test_a_bad_key_is_one_quiet_line_from_the_command(theirs, tmp_path):
    """Twelve INFO lines (open_clip building the model) preceded the one error line."""
    import subprocess
    import sys

    src = recipe.write_checkpoint({**theirs, "visual.extra_head.weight": torch.zeros(2)}, tmp_path / "a.pth")
    out = subprocess.run([sys.executable, "-m", "sketchseg.weights", "convert-authors", str(src),
                          str(tmp_path / "a.safetensors"), "--clip-model", "sketchseg-tiny"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        f"error: {src} is not the authors' checkpoint as expected: 1 key(s) it cannot map: ['visual.extra_head.weight']"]


def test_cli_reports_what_it_did(converted, theirs, tmp_path, capsys):
    src = recipe.write_checkpoint(theirs, tmp_path / "sketch_seg_best_miou.pth")
    out = tmp_path / "authors.safetensors"
    assert main(["convert-authors", str(src), str(out), "--clip-model", "sketchseg-tiny"]) == 0
    text = capsys.readouterr().out
    assert f"mapped {len(converted[1].state)} tensors" in text and f"wrote {out}" in text
    assert "dropped 50 tensors" in text and "transformer.ca" in text


def test_evaluation_loads_it_with_conf_settings(converted):
    """The evaluation node with evaluation.model_config=conf passes conf's model config with the
    catalogued checkpoint: with the README's --params it loads (model.pretrained is never read); without the authors' layer
    the mismatch is named."""
    from sketchseg.model.errors import CheckpointMismatchError
    from sketchseg.pipelines.datasets import SafetensorsCheckpointDataset

    path, _ = converted
    catalogued = SafetensorsCheckpointDataset(str(path)).load()
    conf = {"clip_model": "sketchseg-tiny", "pretrained": "/nowhere/ViT-B-16.pt", "image_size": 64,
            "vv_blocks": [1, 2, 3, 4, 5, 6], "cross_attention_layers": [6], "category_loss_layers": [6],
            "upsample_mode": "bilinear", "inference_normalization": "minmax", "inference_prompts": "ensemble"}
    readme = {"test_time_cross_attention": "authors", "feature_normalization": "authors_test", "quick_gelu": True,
              "cross_attention": False, "thresholding": "none"}
    model, cfg, _ = load_model_from_checkpoint(catalogued, ModelConfig.from_dict({**conf, **readme}),
                                               config_from="conf")  # evaluation.model_config=conf
    reference, _, _ = load_model_from_checkpoint(path)
    image = torch.ones(1, 3, 64, 64)
    image[:, :, 10:30, 5:60] = 0.0
    torch.testing.assert_close(model.eval().segment(image, [["tree", "sun"]], size=64)[0],
                               reference.eval().segment(image, [["tree", "sun"]], size=64)[0])
    with pytest.raises(CheckpointMismatchError, match="authors_cross_attention"):
        load_model_from_checkpoint(catalogued, ModelConfig.from_dict({**conf, **readme, "test_time_cross_attention": "none"}),
                                   config_from="conf")
    # by default (evaluation.model_config=checkpoint) conf's other architecture is refused in one line
    with pytest.raises(CheckpointMismatchError, match=r"finetune \('full' -> 'ln_prompts'\)"):
        load_model_from_checkpoint(catalogued, ModelConfig.from_dict({**conf, **readme}))


def test_a_file_converted_before_input_resize_existed_gets_their_preprocessing(converted, tmp_path):
    """Converted files from before ``model.input_resize`` lack the key: a file of kind 'authors'
    gets their preprocessing, any other checkpoint the default."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path, _ = converted
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
    stored = json.loads(meta["model_config"])
    del stored["input_resize"]
    meta["model_config"] = json.dumps(stored)
    older = tmp_path / "older.safetensors"
    save_file(load_file(str(path)), str(older), metadata=meta)
    assert load_model_from_checkpoint(older)[1].input_resize == "authors_bicubic_rgb8"
    save_file(load_file(str(path)), str(older), metadata={**meta, "kind": "checkpoint"})
    assert load_model_from_checkpoint(older)[1].input_resize == "lanczos_float"
