"""The authors' 85-template test-time prompt ensemble (model/prompt_ensemble.py)."""

from __future__ import annotations

import math

import pytest
import torch

from sketchseg.model.config import ModelConfig
from sketchseg.model.errors import ModelConfigError
from sketchseg.model.prompt_ensemble import SCENE_TEMPLATES, ensemble_embeddings, ensemble_templates

VECTORS = {
    "a cat": [3.0, 0.0],  # not unit-norm: normalised before the mean
    "the cat": [0.0, 1.0],
    "a dog": [0.0, 2.0],
    "the dog": [0.0, 1.0],
    "a ": [2.0, 0.0],
    "the ": [0.0, -1.0],
}


class FakeEncoder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> torch.Tensor:
        self.calls.append(list(texts))
        return torch.tensor([VECTORS[t] for t in texts])


def test_templates_are_clips_80_imagenet_templates_and_5_scene_templates():
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    templates = ensemble_templates()
    assert len(templates) == 85 and len(set(templates)) == 85
    assert templates[:80] == tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)
    assert templates[80:] == SCENE_TEMPLATES
    assert "a sketch of a {}." in templates and "a bad photo of a {}." in templates
    assert templates[-1] == "this is one {} in the scene."


def test_ensemble_by_hand_with_the_empty_string_subtracted():
    enc = FakeEncoder()
    got = ensemble_embeddings(enc, ["cat", "dog"], ["a {}", "the {}"])
    r = 1 / math.sqrt(2)
    # cat: mean of [1, 0] and [0, 1] = [.5, .5] -> [r, r]; dog: [0, 1] twice -> [0, 1]
    # empty: mean of [1, 0] and [0, -1] = [.5, -.5] -> [r, -r]
    expected = torch.tensor([[r - r, r + r], [0 - r, 1 + r]])
    torch.testing.assert_close(got, expected)
    assert enc.calls == [["a cat", "the cat", "a dog", "the dog", "a ", "the "]]  # one text-tower call


def test_ensemble_without_subtraction_is_the_unit_mean():
    got = ensemble_embeddings(FakeEncoder(), ["cat"], ["a {}", "the {}"], subtract_empty=False)
    r = 1 / math.sqrt(2)
    torch.testing.assert_close(got, torch.tensor([[r, r]]))
    one = ensemble_embeddings(FakeEncoder(), ["cat"], ["a {}"], subtract_empty=False)
    torch.testing.assert_close(one, torch.tensor([[1.0, 0.0]]))


def test_ensemble_refuses_bad_templates_and_no_names():
    with pytest.raises(ValueError, match="exactly one"):
        ensemble_embeddings(FakeEncoder(), ["cat"], ["a cat"])
    with pytest.raises(ValueError, match="at least one template"):
        ensemble_embeddings(FakeEncoder(), ["cat"], [])
    with pytest.raises(ValueError, match="category name"):
        ensemble_embeddings(FakeEncoder(), [], ["a {}"])


def test_config_checks_inference_prompts():
    assert ModelConfig().inference_prompts == "template"  # the paper: one prompt per category
    with pytest.raises(ModelConfigError, match="inference_prompts"):
        ModelConfig(inference_prompts="ensembles")
    with pytest.raises(ModelConfigError, match="ensemble_subtract_empty"):
        ModelConfig(ensemble_subtract_empty="yes")
