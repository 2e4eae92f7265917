"""The frozen CLIP text tower, held apart from the visual tower.

``TextTower(clip)`` registers the text parts of an open_clip ``CLIP`` (token embedding, positional
embedding, transformer, final LN, projection, causal mask) or the ``text`` module of a
``CustomTextCLIP``, and computes exactly ``clip.encode_text``. Keeping the towers apart means the
sketch model's state dict has each parameter once.
"""

from __future__ import annotations

import torch
from torch import nn


class TextTower(nn.Module):
    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        if hasattr(clip_model, "text") and isinstance(clip_model.text, nn.Module):
            self.text = clip_model.text
            self.custom = True
        else:
            self.custom = False
            self.token_embedding = clip_model.token_embedding
            self.positional_embedding = clip_model.positional_embedding
            self.transformer = clip_model.transformer
            self.ln_final = clip_model.ln_final
            self.text_projection = clip_model.text_projection
            self.pool_type = getattr(clip_model, "text_pool_type", "argmax")
            self.eos_id = getattr(clip_model, "text_eos_id", None)
            self.register_buffer("attn_mask", clip_model.attn_mask, persistent=False)
        self.logit_scale = clip_model.logit_scale

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids (N, context) -> un-normalised text embeddings (N, D)."""
        if self.custom:
            return self.text(tokens)
        from open_clip.transformer import text_global_pool

        cast_dtype = self.transformer.get_cast_dtype()
        x = self.token_embedding(tokens).to(cast_dtype)
        x = x + self.positional_embedding.to(cast_dtype)
        x = self.transformer(x, attn_mask=self.attn_mask)
        x = self.ln_final(x)
        x = text_global_pool(x, tokens, self.pool_type, eos_token_id=self.eos_id)
        if self.text_projection is not None:
            if isinstance(self.text_projection, nn.Linear):
                x = self.text_projection(x)
            else:
                x = x @ self.text_projection
        return x
