"""Patch-category similarity maps and thresholding (paper Eq. 3, §3.2, §3.4).

All maps are computed in fp32 (also under bf16 autocast): they feed a threshold and an argmax.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_EPS = 1e-6


def patch_similarity(text_emb: torch.Tensor, patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Eq. 3: cosine similarity of every category embedding with every patch embedding.

    Parameters
    ----------
    text_emb
        (B, C, D) category (CCT) embeddings.
    patches
        (B, K, D) patch embeddings, row-major over ``grid`` (h, w), K = h * w.

    Returns
    -------
    (B, C, h, w) similarities in [-1, 1].
    """
    if text_emb.ndim != 3 or patches.ndim != 3:
        raise ValueError(f"expected (B, C, D) and (B, K, D), got {tuple(text_emb.shape)} and {tuple(patches.shape)}")
    h, w = grid
    if patches.shape[1] != h * w:
        raise ValueError(f"{patches.shape[1]} patches do not fill a {h}x{w} grid")
    with torch.autocast(device_type=patches.device.type, enabled=False):
        t = F.normalize(text_emb.float(), dim=-1, eps=_EPS)
        p = F.normalize(patches.float(), dim=-1, eps=_EPS)
        sim = torch.einsum("bcd,bkd->bck", t, p)
    return sim.reshape(sim.shape[0], sim.shape[1], h, w)


def minmax_normalise(maps: torch.Tensor, eps: float = _EPS) -> torch.Tensor:
    """Rescale every map (over its last two dims) to [0, 1]; a constant map becomes 0."""
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    hi = maps.amax(dim=(-2, -1), keepdim=True)
    return (maps - lo) / (hi - lo + eps)


def upsample(maps: torch.Tensor, size: int | tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Resize (..., h, w) maps to ``size`` (align_corners=False).

    Bicubic overshoots; its output is clamped to each input map's [min, max] so a min-max
    normalised map stays in [0, 1] and a cosine map in [-1, 1].
    """
    if mode not in ("bicubic", "bilinear"):
        raise ValueError(f"upsample mode must be 'bicubic' or 'bilinear', got {mode!r}")
    size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, maps.shape[-2], maps.shape[-1]).float()
    out = F.interpolate(flat, size=size, mode=mode, align_corners=False)
    if mode == "bicubic":
        lo = flat.amin(dim=(-2, -1), keepdim=True)
        hi = flat.amax(dim=(-2, -1), keepdim=True)
        out = torch.maximum(torch.minimum(out, hi), lo)
    return out.reshape(*lead, size[0], size[1])


def threshold_mask(sim: torch.Tensor, threshold: torch.Tensor | float, temperature: float) -> torch.Tensor:
    """Straight-through threshold: forward ``(sim > threshold)`` as 0/1, backward the gradient of
    ``sigmoid((sim - threshold) / temperature)`` w.r.t. both ``sim`` and ``threshold``."""
    soft = torch.sigmoid((sim - threshold) / temperature)
    hard = (sim > threshold).to(soft.dtype)
    return hard + (soft - soft.detach())


class LearnableThreshold(nn.Module):
    """A threshold in (0, 1) stored as a logit: ``value = sigmoid(logit)``."""

    def __init__(self, init: float = 0.5) -> None:
        super().__init__()
        if not 0.0 < init < 1.0:
            raise ValueError(f"threshold init must be in (0, 1), got {init}")
        self.logit = nn.Parameter(torch.tensor(math.log(init / (1.0 - init)), dtype=torch.float32))

    @property
    def value(self) -> torch.Tensor:
        return torch.sigmoid(self.logit.float())

    def forward(self) -> torch.Tensor:
        return self.value


def predict_labels(maps: torch.Tensor) -> torch.Tensor:
    """Per-pixel label = index of the category with the highest similarity; (..., C, H, W) -> (..., H, W)."""
    return maps.argmax(dim=-3)


#: §3.4's single-category isolation threshold (best on the paper's test set; 0.79 on its validation set)
PAPER_ISOLATION_THRESHOLD = 0.71


def isolate(maps_minmax: torch.Tensor, threshold: float = PAPER_ISOLATION_THRESHOLD) -> torch.Tensor:
    """§3.4 single-category isolation: boolean mask of min-max normalised maps above ``threshold``
    (0.71 = best on the paper's test set, 0.79 on its validation set)."""
    return maps_minmax > threshold
