"""Triplet losses against hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from sketchseg.model.losses import (
    category_loss,
    category_loss_device,
    holistic_loss,
    holistic_loss_device,
    pairwise_distance,
    string_ids,
    triplet_hardest_negative,
)


def unit(deg: float) -> list[float]:
    r = math.radians(deg)
    return [math.cos(r), math.sin(r)]


def test_distances_on_normalised_vectors():
    a = torch.tensor([[2.0, 0.0]])  # normalised to (1, 0)
    b = torch.tensor([[0.0, 3.0], [1.0, 1.0]])
    l2 = pairwise_distance(a, b, "l2")
    torch.testing.assert_close(l2, torch.tensor([[math.sqrt(2), math.sqrt(2 - math.sqrt(2))]]))
    l1 = pairwise_distance(a, b, "l1")
    r = 1 / math.sqrt(2)
    torch.testing.assert_close(l1, torch.tensor([[2.0, (1 - r) + r]]))
    cos = pairwise_distance(a, b, "cosine")
    torch.testing.assert_close(cos, torch.tensor([[1.0, 1 - r]]))
    with pytest.raises(ValueError):
        pairwise_distance(a, b, "l3")


def test_hardest_negative_is_the_closest_valid_candidate():
    anchors = torch.tensor([unit(0)])
    positives = torch.tensor([unit(60)])
    candidates = torch.tensor([unit(60), unit(90), unit(30), unit(180)])
    # candidate 0 is the positive; the hardest negative is at 30 degrees
    loss = triplet_hardest_negative(anchors, positives, candidates, positive_index=torch.tensor([0]),
                                    margin=0.3, distance="cosine")
    d_pos = 1 - math.cos(math.radians(60))
    d_neg = 1 - math.cos(math.radians(30))
    torch.testing.assert_close(loss, torch.tensor(max(d_pos - d_neg + 0.3, 0.0)))
    # excluding the 30-degree candidate makes 90 degrees the hardest
    same = torch.tensor([[True, False, True, False]])
    loss2 = triplet_hardest_negative(anchors, positives, candidates, same=same, margin=0.3, distance="cosine")
    d_neg2 = 1 - math.cos(math.radians(90))
    torch.testing.assert_close(loss2, torch.tensor(max(d_pos - d_neg2 + 0.3, 0.0)))


def test_margin_and_hinge():
    anchors = torch.tensor([unit(0)])
    positives = torch.tensor([unit(0)])
    candidates = torch.tensor([unit(0), unit(90)])
    pi = torch.tensor([0])
    l2_neg = math.sqrt(2)
    loss = triplet_hardest_negative(anchors, positives, candidates, positive_index=pi, margin=2.0, distance="l2")
    torch.testing.assert_close(loss, torch.tensor(2.0 - l2_neg), atol=1e-5, rtol=0)
    loss0 = triplet_hardest_negative(anchors, positives, candidates, positive_index=pi, margin=0.3, distance="l2")
    assert loss0.item() == 0.0  # well separated: hinge at zero
    loss_l1 = triplet_hardest_negative(anchors, positives, candidates, positive_index=pi, margin=2.5, distance="l1")
    torch.testing.assert_close(loss_l1, torch.tensor(0.5), atol=1e-5, rtol=0)


def test_anchors_without_negatives_are_excluded_and_gradient_is_finite():
    anchors = torch.tensor([unit(0), unit(10)], requires_grad=True)
    positives = torch.tensor([unit(20), unit(20)])
    candidates = torch.tensor([unit(20), unit(40)])
    same = torch.tensor([[True, True], [True, False]])  # anchor 0 has no negative
    loss = triplet_hardest_negative(anchors, positives, candidates, same=same, margin=0.3, distance="cosine")
    d_pos = 1 - math.cos(math.radians(10))
    d_neg = 1 - math.cos(math.radians(30))
    torch.testing.assert_close(loss, torch.tensor(d_pos - d_neg + 0.3))
    loss.backward()
    assert torch.isfinite(anchors.grad).all()
    none = triplet_hardest_negative(anchors, positives, candidates, same=torch.ones(2, 2, dtype=torch.bool))
    assert none.item() == 0.0 and none.requires_grad


def test_holistic_loss_excludes_identical_captions():
    vst = torch.tensor([unit(0), unit(90), unit(5)])
    cap = torch.tensor([unit(30), unit(90), unit(2)])
    # sketch 0 and 2 share a caption: caption 2 (closest to anchor 0) must not be its negative
    captions = ["a dog", "a cat", "a dog"]
    loss = holistic_loss(vst, cap, captions, margin=0.3, distance="cosine")
    d = lambda x, y: 1 - math.cos(math.radians(x - y))  # noqa: E731
    per = [
        max(d(0, 30) - d(0, 90) + 0.3, 0),   # anchor 0: only caption 1 is a negative
        max(d(90, 90) - min(d(90, 30), d(90, 2)) + 0.3, 0),
        max(d(5, 2) - d(5, 90) + 0.3, 0),
    ]
    torch.testing.assert_close(loss, torch.tensor(sum(per) / 3), atol=1e-6, rtol=1e-6)
    distinct = holistic_loss(vst, cap, ["a dog", "a cat", "a bird"], margin=0.3, distance="cosine")
    assert distinct.item() > loss.item()


def test_category_loss_is_the_mean_over_layers_with_name_exclusion():
    cat = torch.tensor([unit(0), unit(90), unit(10)])
    names = ["tree", "car", "tree"]
    layer_a = torch.tensor([unit(5), unit(80), unit(15)])
    layer_b = torch.tensor([unit(50), unit(40), unit(10)])
    la = category_loss({7: layer_a}, cat, names, margin=0.3, distance="cosine")
    lb = category_loss({10: layer_b}, cat, names, margin=0.3, distance="cosine")
    both = category_loss({7: layer_a, 10: layer_b}, cat, names, margin=0.3, distance="cosine")
    torch.testing.assert_close(both, (la + lb) / 2)
    d = lambda x, y: 1 - math.cos(math.radians(x - y))  # noqa: E731
    # layer a: anchors 0 and 2 ("tree") may only use "car" (90 degrees) as negative
    want_a = (max(d(5, 0) - d(5, 90) + 0.3, 0) + max(d(80, 90) - min(d(80, 0), d(80, 10)) + 0.3, 0)
              + max(d(15, 10) - d(15, 90) + 0.3, 0)) / 3
    torch.testing.assert_close(la, torch.tensor(want_a), atol=1e-6, rtol=1e-6)


def test_distances_are_fp32_under_autocast():
    torch.manual_seed(0)
    a, b = torch.randn(4, 32), torch.randn(5, 32)
    ref = pairwise_distance(a, b, "l2")
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        got = pairwise_distance(a, b, "l2")
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("distance", ["l2", "l1", "cosine"])
def test_device_losses_equal_the_plain_ones_on_one_process(distance):
    """``holistic_loss_device`` / ``category_loss_device`` (string ids, no gather) compute the
    losses of ``holistic_loss`` / ``category_loss``; without a local pair the category loss is 0."""
    g = torch.Generator().manual_seed(0)
    captions = ["a tree", "a dog", "a tree", "a house"]
    vst, cap = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    torch.testing.assert_close(
        holistic_loss_device(vst, cap, string_ids(captions), margin=0.3, distance=distance),
        holistic_loss(vst, cap, captions, margin=0.3, distance=distance))
    names = ["tree", "car", "tree", "dog", "sun"]
    cct = torch.randn(5, 8, generator=g)
    layer_vct = {layer: torch.randn(5, 8, generator=g) for layer in (3, 5, 6)}
    zero = torch.zeros(())
    torch.testing.assert_close(
        category_loss_device(layer_vct, cct, string_ids(names), zero, margin=0.3, distance=distance),
        category_loss(layer_vct, cct, names, margin=0.3, distance=distance))
    none = category_loss_device({}, cct[:0], string_ids([]), zero, margin=0.3, distance=distance)
    assert none.item() == 0.0
    assert torch.equal(string_ids(["a", "b", "a"])[[0, 2]], string_ids(["a", "a"]))  # stable ids
