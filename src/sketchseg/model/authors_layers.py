"""Inference pieces of the authors' released checkpoint (``sketchseg.weights convert-authors``).

Written from reading their code (AhmedBourouis/Scene-Sketch-Segmentation, commit af751b1:
``models/ca.py``, ``models/our_model.py``, ``test.py``, ``demo.py``); none of it is copied.

``AuthorsCrossAttention`` (``model.test_time_cross_attention: authors``): the layer their model
applies, at test time too, to the final tokens of BOTH paths, once per category:

* ``t = W_t · text`` (text: the category's embedding, ``embed_dim -> width``), repeated over the
  token positions as the keys;
* multi-head attention (8 heads) with queries ``W_q x``, keys ``W_k t``, values ``W_v x`` and
  output ``W_o``; because every key position holds the same vector, the softmax is uniform and
  the output is the mean of the values: it does NOT depend on the text (their defect #1);
* ``x1 = LN_1(x + attn)``, ``out = LN_2(x1 + W_2 relu(W_1 x1))`` (FFN width 1024), where
  ``LN(z) = a (z - mean) / (std + 1e-6) + b`` with the unbiased standard deviation.

``pair_features`` then builds the authors' per-category token features (v-v path after the layer,
class token from the original path after the layer, ``ln_post`` and ``proj`` on every token) and
``authors_similarity`` their patch similarities, normalised as ``model.feature_normalization``
says: ``authors_test`` (test.py, the published numbers) divides every feature by its norm over the
sketch's categories, ``authors_demo`` (demo.py, app.py) by its norm over the tokens; either is then
a plain dot product with the (unnormalised) category text.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

AUTHORS_HEADS = 8
AUTHORS_FFN = 1024
_EPS = 1e-6


class AuthorsLayerNorm(nn.Module):
    """``a (x - mean) / (std + eps) + b``, std with Bessel's correction (their ``ca.LayerNorm``)."""

    def __init__(self, width: int, eps: float = _EPS) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.ones(width))
        self.b = nn.Parameter(torch.zeros(width))
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)
        return self.a * (x - mean) / (std + self.eps) + self.b


class AuthorsCrossAttention(nn.Module):
    """The authors' text-to-token layer; parameters named after what they do (see module docstring)."""

    def __init__(self, width: int, embed_dim: int, heads: int = AUTHORS_HEADS, ffn: int = AUTHORS_FFN) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads = int(heads)
        self.text_proj = nn.Linear(embed_dim, width)
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)
        self.norm1 = AuthorsLayerNorm(width)
        self.ffn_in = nn.Linear(width, ffn)
        self.ffn_out = nn.Linear(ffn, width)
        self.norm2 = AuthorsLayerNorm(width)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, w = t.shape
        return t.reshape(b, n, self.heads, w // self.heads).transpose(1, 2)

    def forward(self, tokens: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """``tokens`` (P, N, width), ``text`` (P, embed_dim) -> (P, N, width)."""
        p, n, w = tokens.shape
        keys = self.text_proj(text.to(tokens.dtype)).unsqueeze(1).expand(p, n, w)  # the text at every position
        q = self._heads(self.q_proj(tokens))
        k = self._heads(self.k_proj(keys))
        v = self._heads(self.v_proj(tokens))
        scores = (q @ k.transpose(-2, -1)) / (q.shape[-1] ** 0.5)
        attn = torch.softmax(scores, dim=-1) @ v  # (P, heads, N, d)
        attn = self.out_proj(attn.transpose(1, 2).reshape(p, n, w))
        x = self.norm1(tokens + attn)
        return self.norm2(x + self.ffn_out(F.relu(self.ffn_in(x))))


def pair_features(encoder: nn.Module, x_tokens: torch.Tensor, y_tokens: torch.Tensor | None,
                  b_idx: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """The authors' final features of every (sketch, category) pair, (P, N, D).

    ``x_tokens`` / ``y_tokens``: the final tokens (B, N, width) of the original and the v-v path
    (``y_tokens`` None: the original path serves both); ``b_idx`` (P,) the sketch of each pair,
    ``text`` (P, embed_dim) its category embedding. The patch and prompt tokens come from the v-v
    path, token 0 from the original path, each after ``encoder.authors_cross_attention`` when the
    encoder has one; ``ln_post`` and ``proj`` on every token.
    """
    layer = getattr(encoder, "authors_cross_attention", None)
    x = x_tokens[b_idx]
    y = (y_tokens if y_tokens is not None else x_tokens)[b_idx]
    if layer is not None:
        x, y = layer(x, text), layer(y, text)
    tokens = torch.cat([x[:, :1], y[:, 1:]], dim=1)
    return encoder.project(tokens)


def authors_similarity(features: torch.Tensor, text: torch.Tensor, counts: Sequence[int], patch_slice: slice,
                       mode: str) -> torch.Tensor:
    """Patch similarities (P, K) of pair ``features`` (P, N, D) with their category ``text`` (P, D).

    ``mode`` "authors_test": every feature divided by its L2 norm over the categories of its sketch
    (``counts``: pairs per sketch, in order); "authors_demo": by its norm over the N tokens. Then the
    dot product with the text, not normalised; ``patch_slice`` picks the patch tokens.
    """
    features = features.float()
    text = text.float()
    if mode == "authors_test":
        parts = torch.split(features, list(counts), dim=0)
        norms = torch.cat([f.norm(dim=0, keepdim=True).expand_as(f) for f in parts if f.shape[0]], dim=0)
        features = features / norms
    elif mode == "authors_demo":
        features = features / features.norm(dim=1, keepdim=True)
    else:
        raise ValueError(f"unknown authors feature normalisation {mode!r}")
    return torch.einsum("pnd,pd->pn", features[:, patch_slice], text)


def authors_maps(encoder: nn.Module, out, b_idx: torch.Tensor, text: torch.Tensor,  # noqa: ANN001 - EncoderOutput
                 counts: Sequence[int], normalization: str) -> torch.Tensor:
    """Patch similarity maps (P, h, w) of the (sketch, category) pairs as the authors' forward
    computes them: ``pair_features`` from ``out`` (an ``EncoderOutput`` with its final tokens), then
    ``authors_similarity`` or, for ``normalization`` "feature", Eq. 3's cosine."""
    from sketchseg.model.similarity import patch_similarity

    if out.tokens is None:
        raise ValueError("authors_maps needs the encoder's final tokens (forward(return_tokens=True))")
    h, w = out.grid
    features = pair_features(encoder, out.tokens, out.vv_tokens, b_idx, text)
    patches = slice(1, 1 + h * w)
    if normalization == "feature":
        return patch_similarity(text.unsqueeze(1), features[:, patches], (h, w))[:, 0]
    return authors_similarity(features, text, counts, patches, normalization).reshape(-1, h, w)
