"""Variant presets (conf/base/parameters_variants.yml): merging, precedence, validity in every
environment, and that each switch changes what it says in the built (tiny, random) model."""

from __future__ import annotations

import functools
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F

from sketchseg.engine.train import TrainConfig, fit
from sketchseg.errors import SketchSegConfigError
from sketchseg.experiments.compare import load_project_config
from sketchseg.experiments.variants import (
    apply_variant,
    effective_parameters,
    flatten_keys,
    select_variants,
)
from sketchseg.hooks import parameter_entries
from sketchseg.model.clip_loader import register_model_configs
from sketchseg.model.config import ModelConfig
from sketchseg.model.losses import holistic_loss
from sketchseg.model.model import SketchSegModel
from sketchseg.model.similarity import patch_similarity, upsample
from tests.tiny_model import build_tiny, cross_sketches, tiny_cfg

REPO = Path(__file__).resolve().parents[2]
ENVS = ("base", "sample")


@functools.lru_cache(maxsize=None)
def env_params(env: str) -> dict:
    return load_project_config(REPO, env).params


def variants() -> dict:
    return env_params("base")["variants"]


VARIANT_NAMES = list(load_project_config(REPO, "base").params["variants"])


def effective(name: str, env: str = "sample", explicit=()) -> dict:
    return apply_variant(env_params(env), variants(), name, explicit)


# ---------------------------------------------------------------------- pure merging
TOY_PARAMS = {
    "model": {"margin": 0.3, "distance": "l2", "vv_blocks": [7, 8], "category_loss_layers": [7, 10, 12]},
    "training": {"epochs": 20, "train_mode": True},
    "experiment": {"variant": "x", "description": "env"},
}
TOY_VARIANTS = {
    "a": {"group": "Tab. 4", "description": "variant a", "paper": {"miou": 1.0},
          "model": {"margin": 0.5, "distance": "l1"}, "training": {"train_mode": False}},
    "last": {"group": "Tab. 4", "model": {"category_loss_layers": "last"}},
    "b": {"group": "Fig. 6a", "model": {"margin": 0.1}},
    "ours": {"group": "Ours"},
}


def test_apply_variant_deep_merges_without_touching_the_input():
    before = repr(TOY_PARAMS)
    out = apply_variant(TOY_PARAMS, TOY_VARIANTS, "a")
    assert out["model"] == {"margin": 0.5, "distance": "l1", "vv_blocks": [7, 8], "category_loss_layers": [7, 10, 12]}
    assert out["training"] == {"epochs": 20, "train_mode": False}
    assert out["experiment"] == {"variant": "a", "description": "variant a", "group": "Tab. 4"}
    assert "paper" not in out and repr(TOY_PARAMS) == before


def test_command_line_keys_win_over_the_preset():
    out = apply_variant(TOY_PARAMS, TOY_VARIANTS, "a", explicit=["model.margin", "experiment.description"])
    assert out["model"]["margin"] == 0.3 and out["model"]["distance"] == "l1"
    assert out["experiment"]["description"] == "env"
    whole = apply_variant(TOY_PARAMS, TOY_VARIANTS, "a", explicit=["model"])
    assert whole["model"] == TOY_PARAMS["model"] and whole["training"]["train_mode"] is False


def test_unknown_variant_section_or_missing_variants_fail_clearly():
    with pytest.raises(SketchSegConfigError, match=r"unknown experiment.variant 'nope'.*a, last, b, ours"):
        apply_variant(TOY_PARAMS, TOY_VARIANTS, "nope")
    with pytest.raises(SketchSegConfigError, match="unknown parameter section"):
        apply_variant(TOY_PARAMS, {"bad": {"modle": {"margin": 1}}}, "bad")
    with pytest.raises(SketchSegConfigError, match="no variants are defined"):
        apply_variant(TOY_PARAMS, {}, "a")


def test_effective_parameters_label_from_config_vs_name_from_command_line():
    params = {**TOY_PARAMS, "variants": TOY_VARIANTS, "experiment": {"variant": "ours-sample"}}
    out, applied = effective_parameters(params, explicit=[])
    assert not applied and out == params  # a configured label that is not a preset: used as is
    with pytest.raises(SketchSegConfigError, match="known variants"):
        effective_parameters(params, explicit=["experiment.variant"])
    out, applied = effective_parameters({**params, "experiment": {"variant": "b"}}, explicit=["experiment.variant"])
    assert applied and out["model"]["margin"] == 0.1


def test_authors_eval_protocol_changes_only_the_scoring_keys():
    ours, theirs = effective("ours"), effective("authors_eval_protocol")
    assert theirs["evaluation"] == {**ours["evaluation"], "overlap_rule": "most_strokes"}  # render size etc. kept
    assert theirs["model"] == {**ours["model"], "upsample_mode": "bilinear", "inference_normalization": "minmax",
                               "inference_prompts": "ensemble", "input_resize": "authors_bicubic_rgb8"}
    assert ours["model"]["inference_prompts"] == "template" and ours["model"]["ensemble_subtract_empty"] is True
    assert theirs["training"] == ours["training"]


def test_last_layer_resolves_to_each_environments_last_block():
    assert apply_variant(TOY_PARAMS, TOY_VARIANTS, "last")["model"]["category_loss_layers"] == [12]
    assert effective("wo_multilayer_loss", "base")["model"]["category_loss_layers"] == [12]
    assert effective("wo_multilayer_loss", "sample")["model"]["category_loss_layers"] == [6]


def test_select_variants_by_name_group_and_all():
    assert select_variants(TOY_VARIANTS, "all") == ["a", "last", "b", "ours"]
    assert select_variants(TOY_VARIANTS, "b,a") == ["a", "b"]
    assert select_variants(TOY_VARIANTS, "tab4") == ["a", "last", "ours"]  # a group brings 'ours'
    assert select_variants(TOY_VARIANTS, "fig6") == ["b", "ours"]
    with pytest.raises(SketchSegConfigError, match="unknown variant or group 'zzz'"):
        select_variants(TOY_VARIANTS, "zzz")
    real = variants()
    assert select_variants(real, "tab4") == ["ours", "wo_vv", "wo_category_level", "wo_thresholding",
                                             "wo_global_loss", "wo_cross_attention", "wo_multilayer_loss"]
    assert select_variants(real, "authors")[1:] == ["authors_margin_l1", "authors_bilinear", "authors_full_tower",
                                                    "authors_eval_protocol"]


def test_parameter_entries_mirror_kedros_params_datasets():
    entries = parameter_entries({"model": {"margin": 0.3, "sub": {"x": 1}}, "seed": 0})
    assert set(entries) == {"parameters", "params:model", "params:model.margin", "params:model.sub",
                            "params:model.sub.x", "params:seed"}
    assert entries["params:model.sub"] == {"x": 1}
    assert flatten_keys({"model": {"margin": 1, "sub": {"x": 2}}, "a": 3}) == ["model.margin", "model.sub.x", "a"]


# ---------------------------------------------------------------------- the preset file
def _n_layers(clip_model: str) -> int:
    register_model_configs()
    return int(open_clip.get_model_config(clip_model)["vision_cfg"]["layers"])


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_every_variant_builds_valid_configs_in_every_env(name, env):
    params = effective(name, env)
    cfg = ModelConfig.from_dict(params["model"])
    cfg.validate(_n_layers(cfg.clip_model))
    TrainConfig.from_dict(dict(params["training"]))
    assert params["experiment"]["variant"] == name


# presets that coincide with `ours` in an environment (its defaults already are that setting)
SAME_AS_OURS = {"base": {"ours", "ft_ln_prompts"}, "sample": {"ours", "ft_full", "authors_full_tower"}}


@pytest.mark.parametrize("env", ENVS)
def test_every_variant_is_described_and_changes_something(env):
    ours = effective("ours", env)
    groups = {"Ours", "Tab. 2", "Tab. 4", "Fig. 6a", "Fig. 6b", "Tab. S9", "authors' code"}
    same = set()
    for name, spec in variants().items():
        assert spec["group"] in groups and spec["description"], name
        for value in (spec.get("paper") or {}).values():
            assert 0 < float(value) < 100, name
        mine = effective(name, env)
        if (mine["model"], mine["training"], mine["evaluation"]) == (ours["model"], ours["training"],
                                                                    ours["evaluation"]):
            same.add(name)
    assert same == SAME_AS_OURS[env]
    paper = {n: s["paper"]["miou"] for n, s in variants().items() if s.get("paper")}
    assert paper["ours"] == 73.48 and paper["wo_vv"] == 43.55 and paper["zero_shot_clip"] == 17.33
    assert paper["clip_surgery_ft"] == 59.98 and paper["wo_multilayer_loss"] == 71.29
    assert paper["ours_last"] == 72.51 and effective("ours_last", env)["evaluation"]["checkpoint"] == "last"


# ---------------------------------------------------------------------- switches in the built model
def _model_dict(name: str) -> dict:
    model = dict(effective(name, "sample")["model"])
    model.update(pretrained=None, allow_random_init=True)  # random weights whatever conf/sample loads
    return model


def build(backbone, name: str) -> SketchSegModel:
    """The variant's sample-env model on the shared ``backbone`` fixture (conftest: the tiny CLIP)."""
    cfg = ModelConfig.from_dict(_model_dict(name))
    assert cfg.clip_model == tiny_cfg().clip_model  # the backbone the fixture loads
    return build_tiny(backbone, cfg)


def sketches() -> torch.Tensor:
    return cross_sketches(2, margin=16)


CAPTIONS = ["a tree next to a car", "a dog on the grass"]
CATEGORIES = [["tree", "car"], ["dog", "grass"]]


def spy_encoder(model, monkeypatch) -> list:
    calls = []
    original = model.encoder.forward

    def spy(x, **kwargs):
        out = original(x, **kwargs)
        calls.append((x.detach(), kwargs, out))
        return out

    monkeypatch.setattr(model.encoder, "forward", spy)
    return calls


def trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("name", ["zero_shot_clip", "zero_shot_clip_surgery"])
def test_zero_shot_variants_never_train(backbone, name, monkeypatch):
    tcfg = TrainConfig.from_dict(dict(effective(name)["training"]))
    assert tcfg.train_mode is False
    model = build(backbone, name)
    assert model.encoder.prompts is None and model.encoder.cross_attention is None and model.threshold is None

    def boom(*args, **kwargs):
        raise AssertionError("a zero-shot variant must not compute training losses")

    monkeypatch.setattr(model, "training_losses", boom)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = fit(model, [None], None, tcfg)  # one dummy item: the loader exists, no epoch runs
    assert result.best_epoch == 0 and list(result.history["epoch"]) == [0]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_zero_shot_clip_is_plain_clip_and_surgery_uses_the_vv_path(backbone):
    clip, _, _ = backbone
    plain, surgery = build(backbone, "zero_shot_clip"), build(backbone, "zero_shot_clip_surgery")
    assert plain.cfg.vv_inference is False and surgery.cfg.vv_inference is True
    x = sketches()
    with torch.no_grad():
        a, b = plain.encode_sketch(x), surgery.encode_sketch(x)
        torch.testing.assert_close(a.vst, clip.encode_image(plain.normalise(plain.prepare_images(x))))
    torch.testing.assert_close(a.vst, b.vst)  # same class token (original path) ...
    assert not torch.allclose(a.patches, b.patches, atol=1e-4)  # ... different patches (q-k vs v-v)


def test_wo_category_level_never_builds_or_runs_the_category_branch(backbone, monkeypatch):
    model = build(backbone, "wo_category_level")
    assert model.encoder.cross_attention is None and model.threshold is None
    assert not any("cross_attention" in n or n.startswith("threshold") for n, _ in model.named_parameters())
    calls = spy_encoder(model, monkeypatch)
    out = model.training_losses(sketches(), CAPTIONS, CATEGORIES)
    assert len(calls) == 1 and calls[0][1].get("category_text") is None
    assert out["loss_category"].item() == 0.0 and out["n_category_pairs"] == 0
    assert out["loss"].item() == pytest.approx(out["loss_global"].item()) and out["loss"].item() > 0


def test_wo_vv_uses_the_original_path_in_training_and_inference(backbone, monkeypatch):
    ours, wo = build(backbone, "ours"), build(backbone, "wo_vv")
    assert (wo.cfg.vv_train, wo.cfg.vv_inference) == (False, False)
    x = sketches()
    with torch.no_grad():
        p_wo = wo.encode_sketch(x).patches
        p_qk = wo.encoder(wo.normalise(wo.prepare_images(x)), vv=False).patches
        p_ours = ours.encode_sketch(x).patches
    torch.testing.assert_close(p_wo, p_qk)
    assert not torch.allclose(p_wo, p_ours, atol=1e-4)
    calls = spy_encoder(wo, monkeypatch)
    wo.training_losses(x, CAPTIONS, CATEGORIES)
    assert [c[1]["vv"] for c in calls] == [False, False]
    calls_ours = spy_encoder(ours, monkeypatch)
    ours.training_losses(x, CAPTIONS, CATEGORIES)
    assert calls_ours[0][1]["vv"] is True


def test_wo_cross_attention_makes_the_category_pass_text_free(backbone, monkeypatch):
    ours, wo = build(backbone, "ours"), build(backbone, "wo_cross_attention")
    assert wo.encoder.cross_attention is None and ours.encoder.cross_attention is not None
    assert not any("cross_attention" in n for n in trainable(wo))
    x = sketches()
    calls = spy_encoder(wo, monkeypatch)
    wo.training_losses(x, CAPTIONS, CATEGORIES)
    cat_images, kwargs, _ = calls[1]
    assert kwargs["category_text"] is None  # the category images are encoded without any text
    calls_ours = spy_encoder(ours, monkeypatch)
    ours.training_losses(x, CAPTIONS, CATEGORIES)
    images, kw, out = calls_ours[1]
    other_text = ours.encode_text(["A sketch of zebra."] * kw["category_text"].shape[0])
    with torch.no_grad():
        other = ours.encoder.__class__.forward(ours.encoder, images, vv=False, category_text=other_text,
                                               return_layers=kw["return_layers"])
    layer = max(out.layer_vst)
    assert not torch.allclose(out.layer_vst[layer], other.layer_vst[layer], atol=1e-4)  # ours: text matters


def _category_pixels(model, monkeypatch) -> torch.Tensor:
    calls = spy_encoder(model, monkeypatch)
    model.training_losses(sketches(), CAPTIONS, CATEGORIES)
    x = calls[1][0]
    return (x * model.pixel_std + model.pixel_mean).clamp(0, 1)


def test_wo_thresholding_weights_pixels_by_similarity(backbone, monkeypatch):
    wo = build(backbone, "wo_thresholding")
    assert wo.threshold is None and wo.cfg.thresholding == "none"
    soft = _category_pixels(wo, monkeypatch)
    hard = _category_pixels(build(backbone, "ours"), monkeypatch)
    def grey(t: torch.Tensor) -> float:
        return ((t > 0.02) & (t < 0.98)).float().mean().item()
    assert grey(hard) == 0.0  # thresholded mask: every pixel kept (black) or dropped (white)
    assert grey(soft) > 0.01  # soft weights: grey pixels


def test_wo_global_loss_drops_the_holistic_term(backbone, monkeypatch):
    model = build(backbone, "wo_global_loss")
    seen = []
    original = model.encode_text
    monkeypatch.setattr(model, "encode_text", lambda texts: seen.extend(texts) or original(texts))
    out = model.training_losses(sketches(), CAPTIONS, CATEGORIES)
    assert out["loss_global"].item() == 0.0 and out["loss_category"].item() > 0
    torch.testing.assert_close(out["loss"], out["loss_category"])
    assert not set(CAPTIONS) & set(seen)  # captions are never even encoded


def test_wo_multilayer_loss_reads_only_the_last_layer(backbone, monkeypatch):
    model = build(backbone, "wo_multilayer_loss")
    calls = spy_encoder(model, monkeypatch)
    model.training_losses(sketches(), CAPTIONS, CATEGORIES)
    assert list(calls[1][1]["return_layers"]) == [6] and set(calls[1][2].layer_vst) == {6}
    ours_layers = effective("ours")["model"]["category_loss_layers"]
    assert len(ours_layers) > 1 and max(ours_layers) == 6


def test_finetuning_strategies_train_different_sets(backbone):
    sets = {n: trainable(build(backbone, n)) for n in ("ft_ln", "ft_prompts", "ft_ln_prompts", "ft_full")}
    ln, vp, lnvp, full = sets["ft_ln"], sets["ft_prompts"], sets["ft_ln_prompts"], sets["ft_full"]
    assert "encoder.visual.ln_pre.weight" in ln and "encoder.prompts.tokens" not in ln
    assert "encoder.prompts.tokens" in vp and not any(".ln_" in n for n in vp)
    assert "encoder.prompts.tokens" in lnvp and ln - {"encoder.prompts.tokens"} <= lnvp
    assert lnvp < full and "encoder.visual.conv1.weight" in full
    assert "encoder.visual.conv1.weight" not in lnvp
    assert not any(n.startswith("text.") for s in sets.values() for n in s)


@pytest.mark.parametrize("name,n", [("prompts_1", 1), ("prompts_5", 5), ("prompts_10", 10)])
def test_prompt_variants_have_that_many_prompt_tokens(backbone, name, n):
    model = build(backbone, name)
    assert model.encoder.prompts.tokens.shape[0] == n
    tokens, grid = model.encoder.embed(model.normalise(model.prepare_images(sketches())))
    assert tokens.shape[1] == 1 + grid[0] * grid[1] + n


def test_authors_switches(backbone):
    x = sketches()
    margin = build(backbone, "authors_margin_l1")
    assert (margin.cfg.margin, margin.cfg.distance) == (0.5, "l1")
    out = margin.training_losses(x, CAPTIONS, CATEGORIES)
    with torch.no_grad():
        vst = margin.encode_sketch(x, vv=False).vst
        captions = margin.encode_text(CAPTIONS)
    expected = holistic_loss(vst, captions, CAPTIONS, margin=0.5, distance="l1")
    paper = holistic_loss(vst, captions, CAPTIONS, margin=0.3, distance="l2")
    torch.testing.assert_close(out["loss_global"].detach(), expected, rtol=1e-4, atol=1e-5)
    assert not torch.isclose(expected, paper)

    bilinear, bicubic = build(backbone, "authors_bilinear"), build(backbone, "ours")
    assert bilinear.cfg.upsample_mode == "bilinear" and bicubic.cfg.upsample_mode == "bicubic"
    bilinear.eval()
    maps = bilinear.segment(x, CATEGORIES, 64)[0]
    with torch.no_grad():
        feats = bilinear.encode_sketch(x)
        cct = bilinear.encode_text(["A sketch of tree.", "A sketch of car."]).unsqueeze(0)
        raw = patch_similarity(cct, feats.patches[:1], feats.grid)[0]
    torch.testing.assert_close(maps, F.interpolate(raw[None], size=(64, 64), mode="bilinear", align_corners=False)[0],
                               rtol=1e-4, atol=1e-5)
    assert not torch.allclose(maps, upsample(raw, 64, "bicubic"), atol=1e-4)

    full = build(backbone, "authors_full_tower")
    assert full.cfg.finetune == "full" and "encoder.visual.transformer.resblocks.0.attn.in_proj_weight" in trainable(full)


def test_clip_surgery_baselines_are_holistic_full_finetunes(backbone):
    for name, vv_inference in (("clip_ft", False), ("clip_surgery_ft_vv_inference", True), ("clip_surgery_ft", True)):
        params = effective(name)
        model = build(backbone, name)
        assert TrainConfig.from_dict(dict(params["training"])).train_mode is True
        assert model.cfg.use_category_level is False and model.encoder.prompts is None
        assert model.cfg.vv_inference is vv_inference and model.cfg.finetune == "full"
        assert "encoder.visual.conv1.weight" in trainable(model)
    assert effective("clip_surgery_ft")["model"]["vv_train"] is True
    # CLIP Surgery** differs from CLIP Surgery* in training: Eq. 1 reads the v-v path's token
    assert build(backbone, "clip_surgery_ft").cfg.holistic_token == "vv"
    assert build(backbone, "clip_surgery_ft_vv_inference").cfg.holistic_token == "vst"
