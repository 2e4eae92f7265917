"""Triplet losses with hardest-negative mining (paper Eq. 1 and the category-level loss of §3.2).

``max(d(a, p) - d(a, n) + m, 0)`` averaged over anchors, where ``n`` is the hardest negative: the
candidate closest to the anchor among those not marked as "same" (the paper's "hard triplet
mining"). Distances are computed in fp32 on L2-normalised vectors (CLIP's embedding space is
angular):

* ``l2``: Euclidean distance ``sqrt(2 - 2 cos)`` (the paper's ``||·||``),
* ``l1``: Manhattan distance (the authors' code uses ``cdist(p=1)``),
* ``cosine``: ``1 - cos``.

No host synchronisation: anchors without any valid negative are masked out arithmetically.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

DISTANCES = ("l2", "l1", "cosine")
_EPS = 1e-6


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1, eps=_EPS)


def pairwise_distance(a: torch.Tensor, b: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """(N, D) x (M, D) -> (N, M) distances between the L2-normalised rows."""
    if kind not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {kind!r}")
    with torch.autocast(device_type=a.device.type, enabled=False):
        a, b = _unit(a), _unit(b)
        if kind == "l1":
            return torch.cdist(a, b, p=1.0)
        cos = a @ b.T
        if kind == "cosine":
            return 1.0 - cos
        return torch.sqrt(torch.clamp(2.0 - 2.0 * cos, min=1e-12))


def rowwise_distance(a: torch.Tensor, b: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """(N, D) x (N, D) -> (N,) distance between matching rows."""
    if kind not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {kind!r}")
    with torch.autocast(device_type=a.device.type, enabled=False):
        a, b = _unit(a), _unit(b)
        if kind == "l1":
            return (a - b).abs().sum(-1)
        cos = (a * b).sum(-1)
        if kind == "cosine":
            return 1.0 - cos
        return torch.sqrt(torch.clamp(2.0 - 2.0 * cos, min=1e-12))


def triplet_hardest_negative(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    candidates: torch.Tensor,
    positive_index: torch.Tensor | None = None,
    same: torch.Tensor | None = None,
    margin: float = 0.3,
    distance: str = "l2",
) -> torch.Tensor:
    """Mean over anchors of ``max(d(a, p) - min_neg d(a, neg) + margin, 0)``.

    Parameters
    ----------
    anchors, positives
        (N, D) anchor i is matched with positive i.
    candidates
        (M, D) negatives are mined among these.
    positive_index
        (N,) index of each anchor's positive among ``candidates`` (excluded), or -1 for none.
    same
        (N, M) boolean, True where candidate j must not be a negative for anchor i
        (e.g. an identical caption). Combined with ``positive_index`` when both are given.

    Anchors with no valid negative are excluded from the mean; 0 (still attached to the graph)
    when no anchor has one.
    """
    n, m = anchors.shape[0], candidates.shape[0]
    excluded = torch.zeros(n, m, dtype=torch.bool, device=anchors.device)
    if same is not None:
        if tuple(same.shape) != (n, m):
            raise ValueError(f"same mask must be ({n}, {m}), got {tuple(same.shape)}")
        excluded = excluded | same.to(device=anchors.device, dtype=torch.bool)
    if positive_index is not None:
        idx = positive_index.to(device=anchors.device, dtype=torch.long).reshape(n, 1)
        cols = torch.arange(m, device=anchors.device).reshape(1, m)
        excluded = excluded | (cols == idx)
    d_pos = rowwise_distance(anchors, positives, distance)
    d_all = pairwise_distance(anchors, candidates, distance)
    d_neg = torch.where(excluded, torch.full_like(d_all, float("inf")), d_all)
    hardest = d_neg.amin(dim=1) if m > 0 else torch.full_like(d_pos, float("inf"))
    valid = torch.isfinite(hardest)
    per_anchor = torch.clamp(d_pos - torch.where(valid, hardest, d_pos) + margin, min=0.0)
    per_anchor = torch.where(valid, per_anchor, torch.zeros_like(per_anchor))
    count = valid.sum().clamp(min=1).to(per_anchor.dtype)
    return per_anchor.sum() / count


def _same_strings(rows: Sequence[str], cols: Sequence[str], device: torch.device) -> torch.Tensor:
    ids: dict[str, int] = {}
    r = torch.tensor([ids.setdefault(s, len(ids)) for s in rows], dtype=torch.long)
    c = torch.tensor([ids.setdefault(s, len(ids)) for s in cols], dtype=torch.long)
    return (r.reshape(-1, 1) == c.reshape(1, -1)).to(device)


def holistic_loss(
    vst: torch.Tensor,
    caption_emb: torch.Tensor,
    captions: Sequence[str],
    margin: float = 0.3,
    distance: str = "l2",
) -> torch.Tensor:
    """Eq. 1: anchor VST_i, positive its caption CST_i, hardest negative among the batch's other
    captions (captions identical to caption i, including itself, are never negatives)."""
    if not (vst.shape[0] == caption_emb.shape[0] == len(captions)):
        raise ValueError(f"{vst.shape[0]} VSTs, {caption_emb.shape[0]} caption embeddings, {len(captions)} captions")
    same = _same_strings(list(captions), list(captions), vst.device)
    return triplet_hardest_negative(vst, caption_emb, caption_emb, same=same, margin=margin, distance=distance)


def category_loss(
    layer_vct: Mapping[int, torch.Tensor],
    cat_emb: torch.Tensor,
    cat_names: Sequence[str],
    candidates: torch.Tensor | None = None,
    candidate_names: Sequence[str] | None = None,
    margin: float = 0.3,
    distance: str = "l2",
) -> torch.Tensor:
    """Category-level triplet loss averaged over layers.

    Anchor: the VCT of category image p from each layer in ``layer_vct`` ({layer: (P, D)});
    positive: its category prompt embedding ``cat_emb[p]``; hardest negative: the closest
    candidate prompt embedding with a different category name. Candidates default to the
    batch's category prompts (``cat_emb`` / ``cat_names``; duplicates do not change the minimum).
    """
    if not layer_vct:
        raise ValueError("layer_vct is empty")
    if cat_emb.shape[0] != len(cat_names):
        raise ValueError(f"{cat_emb.shape[0]} category embeddings for {len(cat_names)} names")
    if candidates is None:
        candidates, candidate_names = cat_emb, cat_names
    elif candidate_names is None or len(candidate_names) != candidates.shape[0]:
        raise ValueError("candidate_names must name every candidate")
    same = _same_strings(list(cat_names), list(candidate_names), cat_emb.device)
    losses = [
        triplet_hardest_negative(v, cat_emb, candidates, same=same, margin=margin, distance=distance)
        for _, v in sorted(layer_vct.items())
    ]
    return torch.stack(losses).mean()
