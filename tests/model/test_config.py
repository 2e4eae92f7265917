"""ModelConfig: defaults follow the paper, unknown keys and bad values are rejected."""

from __future__ import annotations

import pytest

from sketchseg.model.config import ModelConfig
from sketchseg.model.errors import ModelConfigError


def test_defaults_follow_the_paper():
    cfg = ModelConfig()
    assert cfg.clip_model == "ViT-B-16" and cfg.pretrained == "openai"
    assert cfg.num_visual_prompts == 3 and cfg.margin == 0.3 and cfg.image_size == 224
    assert cfg.vv_blocks == [7, 8, 9, 10, 11, 12]
    assert cfg.cross_attention_layers == [7, 10, 12] == cfg.category_loss_layers
    assert cfg.finetune == "ln_prompts" and cfg.upsample_mode == "bicubic" and cfg.thresholding == "learnable"
    cfg.validate(12)


def test_from_dict_rejects_unknown_keys_and_names_them():
    with pytest.raises(ModelConfigError, match="margn"):
        ModelConfig.from_dict({"margn": 0.3})


def test_from_dict_round_trip():
    cfg = ModelConfig.from_dict({"pretrained": None, "allow_random_init": True, "vv_blocks": (9, 10)})
    assert cfg.vv_blocks == [9, 10]
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_random_init_needs_explicit_permission():
    with pytest.raises(ModelConfigError, match="allow_random_init"):
        ModelConfig.from_dict({"pretrained": None})


@pytest.mark.parametrize(
    "bad",
    [
        {"distance": "l3"},
        {"finetune": "everything"},
        {"thresholding": "fixed"},
        {"upsample_mode": "nearest"},
        {"threshold_init": 1.0},
        {"cross_attention_dropout": 1.5},
        {"vv_train": "yes"},
        {"num_visual_prompts": 2.5},
        {"finetune": "ln"},  # ln with (frozen, random) prompts
        {"use_global_loss": False, "use_category_level": False},
        {"vv_blocks": "7,8"},
        {"holistic_token": "cls"},
        {"holistic_token": "vv", "vv_train": False},  # the v-v token of a path that is not run
    ],
)
def test_bad_values_are_rejected(bad):
    with pytest.raises(ModelConfigError):
        ModelConfig.from_dict(bad)


def test_validate_checks_block_indices_against_the_backbone():
    cfg = ModelConfig()
    with pytest.raises(ModelConfigError, match="1-based"):
        cfg.validate(6)
    with pytest.raises(ModelConfigError, match="0"):
        ModelConfig(vv_blocks=[0, 1]).validate(12)
    with pytest.raises(ModelConfigError, match="duplicates"):
        ModelConfig(category_loss_layers=[12, 12]).validate(12)


def test_prompt_template_is_checked():
    with pytest.raises(ModelConfigError, match="prompt_template"):
        ModelConfig(prompt_template="A sketch of a thing.")


@pytest.mark.parametrize("bad", [{"test_time_cross_attention": "theirs"}, {"feature_normalization": "tokens"},
                                 {"input_resize": "bicubic"}])
def test_authors_inference_switches_take_known_values(bad):
    key = next(iter(bad))
    with pytest.raises(ModelConfigError, match=key):
        ModelConfig.from_dict(bad)
    assert ModelConfig().test_time_cross_attention == "none" and ModelConfig().feature_normalization == "feature"
    assert ModelConfig().input_resize == "lanczos_float"  # sketchseg's training resize
    assert ModelConfig(input_resize="authors_bicubic_rgb8").input_resize == "authors_bicubic_rgb8"
