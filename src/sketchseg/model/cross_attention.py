"""Category-level text-to-sketch cross-attention (paper §3.2, Tab. 4, Tab. S8, Tab. S10).

The paper: "in 7th, 10th, and 12th layers in the MHSA, we feed CCT token from the textual
encoder representing a target category to the linear projection for the queries". It does not say
which query positions. Our design:

* In each of those blocks of the ORIGINAL path, during the category-level pass only, the query
  of the VCT position (token 0) is computed from the category text embedding::

      q_0 = W_q'( LN_t( W_t · CCT ) )

  ``W_t``: Linear(embed_dim -> width), init normal(std = width ** -0.5), bias 0;
  ``LN_t``: LayerNorm(width) initialised as a copy of the block's ``ln_1``, so the projected text
  has the statistics the query projection was trained on whatever the scale of ``W_t · CCT``
  (CCT is L2-normalised, so without it ``W_t · CCT`` would start ~30x smaller than a normalised
  token for ViT-B/16 and the text would barely steer the query);
  ``W_q'``: Linear(width -> width) initialised as a copy of the block's own query projection.
* Every other token keeps its own self-attention query; keys and values are the sketch tokens.
  So the VCT becomes a text-guided pooling of the sketch, and because later blocks attend to
  token 0, every token after the first cross-attention block depends on the text.
* Cross-attention dropout (Tab. S8): while training, with probability ``p`` per sample the
  ordinary self query is used instead (p = 1 is "only self-attention").

New parameters per layer: ``embed_dim*width + width`` (W_t) + ``width*width + width`` (W_q')
+ ``2*width`` (LN_t); for ViT-B/16 that is 393,984 + 590,592 + 1,536 = 986,112, i.e. about
2.96M for three layers, consistent with Tab. S10 (165M for ours vs 162M for CLIP Surgery). They
are used only during training (Tab. S10 note): inference never passes category text.
"""

from __future__ import annotations

import torch
from torch import nn

from sketchseg.model.two_path_attention import QueryHook


class CategoryQueryProjection(nn.Module):
    """Computes the text-derived query of token 0 for one transformer block."""

    def __init__(self, block: nn.Module, embed_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        attn: nn.MultiheadAttention = block.attn
        width = attn.embed_dim
        self.width = width
        self.dropout_p = float(dropout)
        self.text_proj = nn.Linear(embed_dim, width)
        nn.init.normal_(self.text_proj.weight, std=width**-0.5)
        nn.init.zeros_(self.text_proj.bias)
        ln: nn.LayerNorm = block.ln_1
        self.text_norm = nn.LayerNorm(width, eps=ln.eps)
        with torch.no_grad():
            if ln.weight is not None:
                self.text_norm.weight.copy_(ln.weight)
            if ln.bias is not None:
                self.text_norm.bias.copy_(ln.bias)
        self.query_proj = nn.Linear(width, width)
        with torch.no_grad():
            self.query_proj.weight.copy_(attn.in_proj_weight[:width])
            if attn.in_proj_bias is not None:
                self.query_proj.bias.copy_(attn.in_proj_bias[:width])
            else:
                self.query_proj.bias.zero_()

    def text_query(self, text_emb: torch.Tensor) -> torch.Tensor:
        """(B, embed_dim) -> (B, width)."""
        t = self.text_proj(text_emb.to(self.text_proj.weight.dtype))
        t = self.text_norm(t)
        return self.query_proj(t)

    def replace_query(self, q: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        """Self-attention queries (B, N, width) with token 0's query replaced by the text query."""
        q0_text = self.text_query(text_emb).to(q.dtype)
        q0 = q0_text
        if self.training and self.dropout_p > 0:
            use_self = torch.rand(q.shape[0], 1, device=q.device) < self.dropout_p
            q0 = torch.where(use_self, q[:, 0], q0_text)
        return torch.cat([q0.unsqueeze(1), q[:, 1:]], dim=1)

    def hook(self, text_emb: torch.Tensor) -> QueryHook:
        """A ``query_hook`` for ``run_two_path`` bound to ``text_emb`` (B, embed_dim)."""

        def _hook(q: torch.Tensor) -> torch.Tensor:
            return self.replace_query(q, text_emb)

        return _hook


class CrossAttention(nn.Module):
    """The query projections of all cross-attention blocks, keyed by 1-based block index."""

    def __init__(self, blocks: list[nn.Module] | nn.ModuleList, layers: list[int], embed_dim: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.layers = [int(i) for i in layers]
        self.projections = nn.ModuleDict(
            {str(i): CategoryQueryProjection(blocks[i - 1], embed_dim, dropout) for i in self.layers}
        )

    def hooks(self, text_emb: torch.Tensor) -> dict[int, QueryHook]:
        """``{block index: hook}`` for the category text embeddings ``text_emb`` (B, embed_dim)."""
        return {i: self.projections[str(i)].hook(text_emb) for i in self.layers}
