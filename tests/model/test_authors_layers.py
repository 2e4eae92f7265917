"""The authors' test-time layer and feature normalisations (model/authors_layers.py), hand-checked."""

from __future__ import annotations

import math

import pytest
import torch

from sketchseg.model.authors_layers import AuthorsCrossAttention, AuthorsLayerNorm, authors_similarity


def test_layer_norm_uses_the_unbiased_std_plus_eps():
    ln = AuthorsLayerNorm(4)
    out = ln(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    std = math.sqrt(5.0 / 3.0)  # Bessel-corrected: sum of squares 5 over n - 1 = 3
    want = torch.tensor([[-1.5, -0.5, 0.5, 1.5]]) / (std + 1e-6)
    torch.testing.assert_close(out, want)


def test_cross_attention_is_the_mean_of_the_values_whatever_the_text():
    torch.manual_seed(0)
    layer = AuthorsCrossAttention(width=16, embed_dim=8, heads=8, ffn=32).eval()
    tokens = torch.randn(2, 5, 16)
    out_a = layer(tokens, torch.randn(2, 8))
    out_b = layer(tokens, torch.randn(2, 8) * 10)
    torch.testing.assert_close(out_a, out_b)  # uniform softmax: the text never matters (their defect #1)
    attn = layer.out_proj(layer.v_proj(tokens).mean(dim=1, keepdim=True)).expand_as(tokens)
    x1 = layer.norm1(tokens + attn)
    want = layer.norm2(x1 + layer.ffn_out(torch.relu(layer.ffn_in(x1))))
    torch.testing.assert_close(out_a, want, atol=1e-5, rtol=1e-5)


def test_test_py_normalises_over_the_categories_of_each_sketch():
    # sketch 0 has two categories with identical features: each value becomes sign / sqrt(2)
    f = torch.tensor([[[0.0, 0.0], [3.0, -4.0], [-1.0, 2.0]]])  # (1 pair, 3 tokens, 2 dims)
    features = torch.cat([f, f, 2 * f])  # pairs: sketch 0 (2 categories), sketch 1 (1 category)
    text = torch.tensor([[1.0, 1.0], [2.0, 0.0], [1.0, -1.0]])
    sim = authors_similarity(features, text, counts=[2, 1], patch_slice=slice(1, 3), mode="authors_test")
    r = 1 / math.sqrt(2)
    want = torch.tensor([[r - r, -r + r], [2 * r, -2 * r], [1.0 + 1.0, -1.0 - 1.0]])
    torch.testing.assert_close(sim, want)


def test_demo_py_normalises_over_the_tokens():
    f = torch.tensor([[[3.0, 0.0], [4.0, 1.0], [0.0, 0.0]]])  # norms over tokens: 5 and 1
    sim = authors_similarity(f, torch.tensor([[1.0, 2.0]]), counts=[1], patch_slice=slice(1, 3), mode="authors_demo")
    torch.testing.assert_close(sim, torch.tensor([[4 / 5 + 2.0, 0.0]]))


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="normalisation"):
        authors_similarity(torch.ones(1, 2, 2), torch.ones(1, 2), [1], slice(1, 2), "feature")
