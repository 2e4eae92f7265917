"""The pre-training losses: symmetric InfoNCE (CLIP), patch-to-text InfoNCE on inked patches, and
a multiple-instance loss from image-level tags."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["contrastive_loss", "contrastive_loss_from_logits", "soft_max_pool", "mil_loss", "ink_patch_loss",
           "patch_ink", "patch_label_loss"]


def _pair_targets(b: int, groups: Sequence[int] | torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """(B, B) target distribution over the B texts for each of the B images: the identity, or with
    ``groups`` uniform over the texts of the image's group (on ``like``'s device and dtype)."""
    if groups is None:
        return torch.eye(b, device=like.device, dtype=like.dtype)
    g = torch.as_tensor(groups, device=like.device)
    if g.shape != (b,):
        raise ValueError(f"groups must have one entry per pair ({b}), got shape {tuple(g.shape)}")
    pos = (g[:, None] == g[None, :]).to(like.dtype)
    return pos / pos.sum(dim=1, keepdim=True)


def contrastive_loss_from_logits(logits: torch.Tensor, groups: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE on a (B, B) image-by-text logit matrix (see :func:`contrastive_loss`)."""
    if logits.ndim != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(f"logits must be a square (B, B) matrix, got {tuple(logits.shape)}")
    targets = _pair_targets(logits.shape[0], groups, logits)
    loss_i = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    loss_t = -(targets.t() * F.log_softmax(logits.t(), dim=1)).sum(dim=1).mean()
    return 0.5 * (loss_i + loss_t)


def contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float,
                     groups: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP) over a batch of L2-normalised embeddings (B, D).

    ``logits = logit_scale * image_emb @ text_emb.T``; the loss is the mean of the image->text and
    text->image cross-entropies. With ``groups``, every pair of the same group counts as a positive
    (target probability spread evenly over them), so two sketches of trees are not pushed apart;
    without, the positives are the diagonal (standard CLIP).
    """
    if image_emb.shape != text_emb.shape or image_emb.ndim != 2:
        raise ValueError(f"image and text embeddings must both be (B, D), got {tuple(image_emb.shape)} "
                         f"and {tuple(text_emb.shape)}")
    return contrastive_loss_from_logits(logit_scale * image_emb @ text_emb.t(), groups)


def soft_max_pool(patch_emb: torch.Tensor, text_emb: torch.Tensor, temperature: float) -> torch.Tensor:
    """For every image b and text t, a soft maximum over the patches k of cos(patch_bk, text_t):
    ``temperature * log(mean_k exp(cos_bkt / temperature))`` (the maximum as temperature -> 0, the
    mean as it grows). L2-normalised patches (B, K, D) and texts (T, D) -> (B, T)."""
    if patch_emb.ndim != 3 or text_emb.ndim != 2 or patch_emb.shape[-1] != text_emb.shape[-1]:
        raise ValueError(f"expected patches (B, K, D) and texts (T, D), got {tuple(patch_emb.shape)} "
                         f"and {tuple(text_emb.shape)}")
    cos = torch.einsum("bkd,td->btk", patch_emb, text_emb)
    return temperature * (torch.logsumexp(cos / temperature, dim=-1) - math.log(patch_emb.shape[1]))


def mil_loss(patch_emb: torch.Tensor, prompt_emb: torch.Tensor, logit_scale: torch.Tensor | float,
             present: torch.Tensor, temperature: float) -> torch.Tensor:
    """Multiple-instance loss from image-level tags: sketch b holds the categories ``present[b]``
    (B, C) bool of the C category prompts (C, D). Each category's score is the soft maximum over
    the patches of the patch-prompt cosine; the softmax over categories of ``logit_scale * score``
    is pulled to the uniform distribution over the present ones (cross-entropy). So every present
    category needs a patch that matches it and no patch may match an absent one: patch tokens
    become category-specific without any patch label. Sketches without tags are skipped."""
    if present.shape != (patch_emb.shape[0], prompt_emb.shape[0]):
        raise ValueError(f"present must be (B, C) = ({patch_emb.shape[0]}, {prompt_emb.shape[0]}), "
                         f"got {tuple(present.shape)}")
    scores = logit_scale * soft_max_pool(patch_emb, prompt_emb, temperature)
    target = present.to(scores.dtype)
    n = target.sum(dim=1, keepdim=True)
    keep = n[:, 0] > 0
    if not bool(keep.any()):
        return scores.sum() * 0.0
    ce = -((target / n.clamp_min(1.0)) * F.log_softmax(scores, dim=1)).sum(dim=1)
    return ce[keep].mean()


def ink_patch_loss(patch_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float,
                   patch_ink: torch.Tensor, groups: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """Patch-to-text InfoNCE for the inked patches of single-object sketches.

    In a sketch of one object every inked patch shows that object, so each patch token (B, K, D)
    is classified among the batch's texts (T = B, L2-normalised) with the image's own text (or,
    with ``groups``, any text of its group) as the target. ``patch_ink`` (B, K) weights the
    patches (0 = not scored: empty patches, scene images). Returns the weighted mean cross-entropy
    (0 when nothing is scored).
    """
    b, k, _ = patch_emb.shape
    if text_emb.shape[0] != b or patch_ink.shape != (b, k):
        raise ValueError(f"expected texts ({b}, D) and patch_ink ({b}, {k}), got {tuple(text_emb.shape)} "
                         f"and {tuple(patch_ink.shape)}")
    logits = logit_scale * torch.einsum("bkd,td->bkt", patch_emb, text_emb)
    targets = _pair_targets(b, groups, logits)
    ce = -(targets[:, None, :] * F.log_softmax(logits, dim=-1)).sum(dim=-1)  # (B, K)
    w = patch_ink.to(ce.dtype)
    return (w * ce).sum() / w.sum().clamp_min(1e-6)


def patch_label_loss(patch_emb: torch.Tensor, prompt_emb: torch.Tensor, logit_scale: torch.Tensor | float,
                     labels: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Patch-to-category cross-entropy from stroke labels: patch k of sketch b (B, K, D) is
    classified among the C category prompts (C, D), all L2-normalised, with ``labels[b, k]`` (the
    category owning most of its ink; -1 = none) as the target. ``weight`` (B, K) weights the
    patches (0 = not scored, e.g. too little ink); patches labelled -1 are never scored. Returns
    the weighted mean (0 when nothing is scored)."""
    b, k, _ = patch_emb.shape
    if labels.shape != (b, k) or weight.shape != (b, k):
        raise ValueError(f"expected labels and weight of shape ({b}, {k}), got {tuple(labels.shape)} and "
                         f"{tuple(weight.shape)}")
    logits = logit_scale * torch.einsum("bkd,cd->bkc", patch_emb, prompt_emb)
    ce = F.cross_entropy(logits.reshape(b * k, -1), labels.clamp_min(0).reshape(-1), reduction="none").reshape(b, k)
    w = torch.where(labels >= 0, weight.to(ce.dtype), torch.zeros_like(ce))
    return (w * ce).sum() / w.sum().clamp_min(1e-6)


def patch_ink(grey_u8: torch.Tensor, patch_size: int, min_ink: float) -> torch.Tensor:
    """Mean ink (1 - grey) of every patch, (B, S, S) uint8 -> (B, K) row-major; below ``min_ink`` -> 0."""
    ink = 1.0 - grey_u8.float().unsqueeze(1) / 255.0
    per_patch = F.avg_pool2d(ink, patch_size).flatten(1)
    return torch.where(per_patch >= min_ink, per_patch, torch.zeros_like(per_patch))
