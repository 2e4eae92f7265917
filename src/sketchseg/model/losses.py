"""Triplet losses with hardest-negative mining (paper Eq. 1 and the category-level loss of §3.2).

``max(d(a, p) - d(a, n) + m, 0)`` averaged over anchors, where ``n`` is the hardest negative: the
candidate closest to the anchor among those not marked as "same" (the paper's "hard triplet
mining"). Distances are computed in fp32 on L2-normalised vectors (CLIP's embedding space is
angular):

* ``l2``: Euclidean distance ``sqrt(2 - 2 cos)`` (the paper's ``||·||``),
* ``l1``: Manhattan distance (the authors' code uses ``cdist(p=1)``),
* ``cosine``: ``1 - cos``.

No host synchronisation: anchors without any valid negative are masked out arithmetically.

Data-parallel training (``holistic_loss_device`` / ``category_loss_device``, used by
``SketchSegModel.training_losses``): the same losses over the GLOBAL batch spread over several
processes (see ``LossGather``). Hardest negatives are mined among the caption and category-prompt
embeddings of every process (text embeddings are frozen, so only they are gathered, no image
features), and each process's share is scaled so that the gradients averaged by
DistributedDataParallel equal those of one process holding the whole batch. Strings are compared
through ``string_ids`` (equal in every process), and nothing syncs with the host.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Mapping, Protocol, Sequence

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


# ---------------------------------------------------------------------------- data-parallel losses
class LossGather(Protocol):
    """What ``training_losses`` needs from a data-parallel process group (engine/distributed.py).

    ``gather_rows(emb (n, D), ids (n,), pad_to)`` pads the local rows to ``pad_to``, gathers them
    from every process in rank order and returns ``(emb (W*pad_to, D), ids (W*pad_to,), valid
    (W*pad_to,) bool)``; ``all_reduce_sum`` sums a tensor over the processes (no gradient).
    ``max_captions`` / ``max_pairs`` bound one process's captions / category pairs per batch.
    """

    world_size: int
    max_captions: int
    max_pairs: int

    def gather_rows(self, emb: torch.Tensor, ids: torch.Tensor,
                    pad_to: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor: ...


@functools.lru_cache(maxsize=1 << 16)
def _string_id(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


def string_ids(texts: Sequence[str]) -> torch.Tensor:
    """Stable signed 64-bit ids of strings (blake2b; equal in every process), as a CPU LongTensor."""
    return torch.tensor([_string_id(t) for t in texts], dtype=torch.long)


def triplet_sum_count(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    candidates: torch.Tensor,
    excluded: torch.Tensor,
    margin: float,
    distance: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``triplet_hardest_negative`` split into (sum over anchors, number of anchors with a valid
    negative), so that the mean can be taken over several processes. ``excluded`` (N, M)."""
    d_pos = rowwise_distance(anchors, positives, distance)
    d_all = pairwise_distance(anchors, candidates, distance)
    d_neg = torch.where(excluded, torch.full_like(d_all, float("inf")), d_all)
    hardest = d_neg.amin(dim=1) if candidates.shape[0] > 0 else torch.full_like(d_pos, float("inf"))
    valid = torch.isfinite(hardest)
    per_anchor = torch.clamp(d_pos - torch.where(valid, hardest, d_pos) + margin, min=0.0)
    per_anchor = torch.where(valid, per_anchor, torch.zeros_like(per_anchor))
    return per_anchor.sum(), valid.sum()


def mean_over_anchors(sums: list[torch.Tensor], count: torch.Tensor, gather: LossGather | None) -> torch.Tensor:
    """Mean over layers of (sum over anchors / number of valid anchors), over the global batch."""
    if gather is None:
        denom = count.clamp(min=1).to(sums[0].dtype)
        return torch.stack([s / denom for s in sums]).mean()
    total = gather.all_reduce_sum(count.detach())
    denom = total.clamp(min=1).to(sums[0].dtype)
    return torch.stack([s / denom for s in sums]).mean() * gather.world_size


def holistic_loss_device(
    vst: torch.Tensor,
    caption_emb: torch.Tensor,
    ids: torch.Tensor,
    *,
    margin: float,
    distance: str,
    gather: LossGather | None = None,
) -> torch.Tensor:
    """Eq. 1 as ``holistic_loss`` (identical captions are never negatives), without host syncs,
    over the global batch when ``gather`` is given. ``ids``: ``string_ids(captions)`` on
    the device of ``vst``."""
    cand, cand_ids = caption_emb, ids
    excluded_extra = None
    if gather is not None:
        cand, cand_ids, ok = gather.gather_rows(caption_emb, ids, gather.max_captions)
        excluded_extra = ~ok.reshape(1, -1)
    excluded = ids.reshape(-1, 1) == cand_ids.reshape(1, -1)
    if excluded_extra is not None:
        excluded = excluded | excluded_extra
    s, n = triplet_sum_count(vst, caption_emb, cand, excluded, margin, distance)
    return mean_over_anchors([s], n, gather)


def category_loss_device(
    layer_vct: Mapping[int, torch.Tensor],
    cct: torch.Tensor,
    ids: torch.Tensor,
    zero: torch.Tensor,
    *,
    margin: float,
    distance: str,
    gather: LossGather | None = None,
) -> torch.Tensor:
    """The category loss as ``category_loss`` (negatives: prompts of other category names),
    without host syncs, over the global batch when ``gather`` is given. ``ids``:
    ``string_ids(category names)`` on the device of ``cct``; ``zero``: the loss without any local
    category pair (data-parallel only: this process still takes part in the collectives)."""
    cand, cand_ids = cct, ids
    excluded_extra = None
    if gather is not None:
        if len(ids) > gather.max_pairs:
            raise ValueError(
                f"{len(ids)} category pairs in one process's batch, more than the {gather.max_pairs} "
                "it was set up for (local batch x training.max_categories_per_sketch)"
            )
        cand, cand_ids, ok = gather.gather_rows(cct, ids, gather.max_pairs)
        excluded_extra = ~ok.reshape(1, -1)
    excluded = ids.reshape(-1, 1) == cand_ids.reshape(1, -1)
    if excluded_extra is not None:
        excluded = excluded | excluded_extra
    sums: list[torch.Tensor] = []
    count: torch.Tensor | None = None
    for _, vct in sorted(layer_vct.items()):
        s, n = triplet_sum_count(vct, cct, cand, excluded, margin, distance)
        sums.append(s)
        count = n if count is None else count  # the same for every layer
    if count is None:  # no local category pair (data-parallel only)
        sums, count = [zero], torch.zeros((), dtype=torch.long, device=zero.device)
    return mean_over_anchors(sums, count, gather)
