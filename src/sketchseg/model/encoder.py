"""The sketch encoder (paper §3.1.1, Fig. 2c/g): open_clip's ViT with visual prompts, the two-path
(q-k / v-v) transformer and, for the category level, text-to-sketch cross-attention.

With no prompts, ``vv=False`` and no category text it computes exactly ``clip.encode_image``.
``ln_post`` and ``proj`` are applied to every returned token, so patch tokens live in the joint
image-text space.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sketchseg.model.authors_layers import AuthorsCrossAttention
from sketchseg.model.errors import ModelConfigError
from sketchseg.model.cross_attention import CrossAttention
from sketchseg.model.two_path_attention import ATTENTION_IMPLEMENTATIONS, check_block, run_two_path
from sketchseg.model.visual_prompts import VisualPrompts

logger = logging.getLogger(__name__)


@dataclass
class EncoderOutput:
    """Outputs of ``SketchEncoder.forward``.

    vst: (B, D) VST = ln_post + proj of token 0 of the ORIGINAL path's final output.
    patches: (B, K, D) patch tokens (prompts excluded) of the v-v path when ``vv`` else of the
        original path, after ln_post + proj; row-major over ``grid``.
    layer_vst: {l: (B, D)} token 0 of the original path after block l (1-based), ln_post + proj.
    vv_vst: (B, D) token 0 of the v-v path's final output, ln_post + proj (None unless ``vv``).
    grid: (h, w) patch grid, K = h * w.
    tokens, vv_tokens: (B, N, width) final tokens of the original / v-v path before ln_post
        (only with ``forward(return_tokens=True)``; ``vv_tokens`` None unless ``vv``).
    """

    vst: torch.Tensor
    patches: torch.Tensor
    layer_vst: dict[int, torch.Tensor] = field(default_factory=dict)
    grid: tuple[int, int] = (0, 0)
    vv_vst: torch.Tensor | None = None
    tokens: torch.Tensor | None = None
    vv_tokens: torch.Tensor | None = None


def interpolate_positional_embedding(
    pos: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]
) -> torch.Tensor:
    """Bicubically resize the patch part of a (1 + h*w, width) positional embedding."""
    if tuple(old_grid) == tuple(new_grid):
        return pos
    cls_pos, patch_pos = pos[:1], pos[1:]
    width = pos.shape[-1]
    grid = patch_pos.reshape(1, old_grid[0], old_grid[1], width).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=new_grid, mode="bicubic", align_corners=False).to(pos.dtype)
    patch_pos = grid.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], width)
    return torch.cat([cls_pos, patch_pos], dim=0)


class SketchEncoder(nn.Module):
    """Wraps ``clip.visual`` (an open_clip ``VisionTransformer``) without copying its weights.

    Parameters
    ----------
    visual
        open_clip ``VisionTransformer`` (registered as ``self.visual``).
    num_prompts, prompt_init_range, prompt_dropout
        visual prompts (0 = none).
    vv_blocks
        1-based blocks carrying the v-v path (used when ``forward(vv=True)``).
    cross_attention_layers, embed_dim, cross_attention_dropout
        blocks whose VCT query comes from the category text (empty = no cross-attention modules).
    authors_cross_attention
        add the authors' test-time layer (``authors_layers.AuthorsCrossAttention``, attribute
        ``authors_cross_attention``) for converted authors' checkpoints; ``forward`` never applies it.
    attention, shared_qkv
        implementation switches of the transformer (``two_path_attention``): "sdpa" / "manual"
        attention and whether the v-v path reuses the block's q/k/v projection. Plain attributes
        (``attention_impl``, ``shared_qkv``) that may be changed at any time; no effect on results
        beyond float rounding.
    """

    def __init__(
        self,
        visual: nn.Module,
        *,
        num_prompts: int = 0,
        prompt_init_range: float = 0.0625,
        prompt_dropout: float = 0.0,
        vv_blocks: Sequence[int] = (),
        cross_attention_layers: Sequence[int] = (),
        embed_dim: int | None = None,
        cross_attention_dropout: float = 0.0,
        attention: str = "sdpa",
        shared_qkv: bool = True,
        authors_cross_attention: bool = False,
    ) -> None:
        super().__init__()
        if attention not in ATTENTION_IMPLEMENTATIONS:
            raise ModelConfigError(f"attention must be one of {ATTENTION_IMPLEMENTATIONS}, got {attention!r}")
        self.attention_impl = attention
        self.shared_qkv = bool(shared_qkv)
        for attr in ("conv1", "class_embedding", "positional_embedding", "ln_pre", "transformer", "ln_post"):
            if not hasattr(visual, attr):
                raise ModelConfigError(
                    f"the CLIP visual tower ({type(visual).__name__}) has no '{attr}'; only open_clip "
                    "VisionTransformer towers are supported"
                )
        if getattr(visual, "attn_pool", None) is not None:
            raise ModelConfigError("open_clip ViTs with attentional pooling are not supported")
        if getattr(visual, "pool_type", "tok") != "tok" or getattr(visual, "final_ln_after_pool", False):
            raise ModelConfigError("only class-token pooled open_clip ViTs (pool_type='tok') are supported")
        if not isinstance(getattr(visual, "patch_dropout", nn.Identity()), nn.Identity):
            raise ModelConfigError("open_clip patch dropout must be disabled (patch_dropout=0)")
        if getattr(visual, "proj", None) is None:
            raise ModelConfigError("the CLIP visual tower has no output projection 'proj'")
        for i, block in enumerate(visual.transformer.resblocks, start=1):
            check_block(block, i)

        self.visual = visual
        self.n_layers = len(visual.transformer.resblocks)
        self.width = int(visual.class_embedding.shape[-1])
        self.output_dim = int(visual.proj.shape[-1])
        self.patch_size = tuple(int(p) for p in visual.conv1.kernel_size)
        self.pretrained_grid = tuple(int(g) for g in visual.grid_size)
        self.vv_blocks = sorted(int(i) for i in vv_blocks)
        for name, idx in (("vv_blocks", self.vv_blocks), ("cross_attention_layers", list(cross_attention_layers))):
            bad = [i for i in idx if not 1 <= int(i) <= self.n_layers]
            if bad:
                raise ModelConfigError(f"{name} {bad} outside 1..{self.n_layers}")

        self.prompts = (
            VisualPrompts(num_prompts, self.width, prompt_init_range, prompt_dropout) if num_prompts > 0 else None
        )
        self.num_prompts = int(num_prompts)
        self.cross_attention: CrossAttention | None = None
        if cross_attention_layers:
            self.cross_attention = CrossAttention(
                visual.transformer.resblocks,
                list(cross_attention_layers),
                embed_dim if embed_dim is not None else self.output_dim,
                cross_attention_dropout,
            )
        self.authors_cross_attention: AuthorsCrossAttention | None = (
            AuthorsCrossAttention(self.width, embed_dim if embed_dim is not None else self.output_dim)
            if authors_cross_attention else None
        )

    # ------------------------------------------------------------------ pieces
    def embed(self, pixels: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patch + class embeddings + positional embedding + prompts + ln_pre -> (B, 1+K+S, width)."""
        visual = self.visual
        x = visual.conv1(pixels)  # (B, width, h, w)
        grid = (int(x.shape[-2]), int(x.shape[-1]))
        x = x.flatten(2).transpose(1, 2)  # (B, K, width)
        cls = visual.class_embedding.to(x.dtype).reshape(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        pos = interpolate_positional_embedding(visual.positional_embedding, self.pretrained_grid, grid)
        x = x + pos.to(x.dtype)
        if self.prompts is not None:
            x = self.prompts.append(x)
        return visual.ln_pre(x), grid

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        """ln_post + proj on (..., width) tokens -> (..., D)."""
        return self.visual.ln_post(tokens) @ self.visual.proj

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        pixels_normalised: torch.Tensor,
        *,
        vv: bool = False,
        category_text: torch.Tensor | None = None,
        return_layers: Sequence[int] = (),
        return_tokens: bool = False,
    ) -> EncoderOutput:
        """Encode CLIP-normalised images (B, 3, H, W).

        ``category_text`` (B, embed_dim) turns on the cross-attention (category-level pass); it is
        an error when the encoder has no cross-attention modules.
        """
        if pixels_normalised.ndim != 4 or pixels_normalised.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(pixels_normalised.shape)}")
        bad = [int(i) for i in return_layers if not 1 <= int(i) <= self.n_layers]
        if bad:
            raise ValueError(f"return_layers {bad} outside 1..{self.n_layers}")
        hooks = None
        if category_text is not None:
            if self.cross_attention is None:
                raise ModelConfigError("category_text given but the encoder has no cross-attention layers")
            if category_text.shape[0] != pixels_normalised.shape[0]:
                raise ValueError(
                    f"category_text has {category_text.shape[0]} rows for {pixels_normalised.shape[0]} images"
                )
            hooks = self.cross_attention.hooks(category_text)

        x, grid = self.embed(pixels_normalised)
        n_patches = grid[0] * grid[1]
        x, y, layers = run_two_path(
            self.visual.transformer.resblocks,
            x,
            vv_blocks=self.vv_blocks if vv else (),
            query_hooks=hooks,
            return_layers=return_layers,
            attention=self.attention_impl,
            shared_qkv=self.shared_qkv,
        )
        vst = self.project(x[:, 0])
        source = y if (vv and y is not None) else x
        patches = self.project(source[:, 1 : 1 + n_patches])
        layer_vst = {int(l): self.project(t[:, 0]) for l, t in layers.items()}
        vv_vst = self.project(y[:, 0]) if (vv and y is not None) else None
        return EncoderOutput(vst=vst, patches=patches, layer_vst=layer_vst, grid=grid, vv_vst=vv_vst,
                             tokens=x if return_tokens else None,
                             vv_tokens=y if (return_tokens and vv) else None)
