"""Similarity maps (Eq. 3), normalisation, upsampling and the straight-through threshold."""

from __future__ import annotations

import math

import pytest
import torch

from sketchseg.model.similarity import (
    LearnableThreshold,
    isolate,
    minmax_normalise,
    patch_similarity,
    predict_labels,
    threshold_mask,
    upsample,
)


def test_eq3_cosine_similarity_on_hand_made_vectors():
    text = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # (1, C=2, D=2)
    patches = torch.tensor([[[3.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]]])  # (1, K=4, D)
    sim = patch_similarity(text, patches, (2, 2))
    r = 1 / math.sqrt(2)
    want = torch.tensor([[[[1.0, 0.0], [r, -1.0]], [[0.0, 1.0], [r, 0.0]]]])
    torch.testing.assert_close(sim, want)


def test_patch_similarity_checks_the_grid():
    with pytest.raises(ValueError, match="grid"):
        patch_similarity(torch.randn(1, 2, 4), torch.randn(1, 5, 4), (2, 2))


def test_minmax_normalises_each_map_to_unit_range():
    maps = torch.randn(2, 3, 4, 5) * 3 + 1
    out = minmax_normalise(maps)
    flat = out.flatten(2)
    torch.testing.assert_close(flat.amin(-1), torch.zeros(2, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(flat.amax(-1), torch.ones(2, 3), atol=1e-5, rtol=0)
    assert torch.all(minmax_normalise(torch.ones(1, 1, 2, 2)) == 0)


def test_bicubic_and_bilinear_differ_and_bicubic_stays_in_range():
    torch.manual_seed(0)
    maps = minmax_normalise(torch.rand(1, 2, 4, 4))
    cubic = upsample(maps, 16, "bicubic")
    linear = upsample(maps, (16, 16), "bilinear")
    assert cubic.shape == linear.shape == (1, 2, 16, 16)
    assert not torch.allclose(cubic, linear, atol=1e-3)
    assert cubic.min() >= 0.0 and cubic.max() <= 1.0
    # a sharp step overshoots without the clamp
    step = torch.zeros(1, 1, 4, 4)
    step[..., 2:] = 1.0
    assert torch.nn.functional.interpolate(step, size=16, mode="bicubic").max() > 1.0
    assert upsample(step, 16, "bicubic").max() <= 1.0
    with pytest.raises(ValueError):
        upsample(maps, 8, "nearest")


def test_threshold_mask_is_hard_forward_and_passes_gradient_to_the_threshold():
    sim = torch.tensor([0.1, 0.45, 0.55, 0.9], requires_grad=True)
    thr = torch.tensor(0.5, requires_grad=True)
    mask = threshold_mask(sim, thr, temperature=0.05)
    assert torch.equal(mask.detach(), torch.tensor([0.0, 0.0, 1.0, 1.0]))
    (mask * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert thr.grad is not None and thr.grad.abs() > 0
    assert sim.grad is not None and torch.all(sim.grad > 0)
    # gradient is that of sigmoid((sim - thr) / T)
    s = torch.sigmoid((sim.detach() - 0.5) / 0.05)
    torch.testing.assert_close(sim.grad, torch.tensor([1.0, 2.0, 3.0, 4.0]) * s * (1 - s) / 0.05)


def test_learnable_threshold_is_a_sigmoid_of_a_logit():
    thr = LearnableThreshold(0.3)
    torch.testing.assert_close(thr.value, torch.tensor(0.3))
    thr.value.backward()
    assert thr.logit.grad is not None and thr.logit.grad > 0
    with pytest.raises(ValueError):
        LearnableThreshold(1.0)


def test_labels_and_isolation():
    maps = torch.tensor([[[0.1, 0.9]], [[0.8, 0.2]]])  # (C=2, H=1, W=2)
    assert torch.equal(predict_labels(maps), torch.tensor([[1, 0]]))
    assert torch.equal(isolate(maps, 0.71), torch.tensor([[[False, True]], [[True, False]]]))


def test_similarity_is_computed_in_fp32_under_autocast():
    torch.manual_seed(0)
    text, patches = torch.randn(2, 3, 16), torch.randn(2, 4, 16)
    ref = patch_similarity(text, patches, (2, 2))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        got = patch_similarity(text, patches, (2, 2))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-6)
