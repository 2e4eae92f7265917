"""The tiny random-weight model configuration shared by the model unit tests."""

from __future__ import annotations

from typing import Any

import torch

from sketchseg.model.config import ModelConfig
from sketchseg.model.model import SketchSegModel

# sketchseg-tiny: 64 px, 6 blocks, width 96; v-v path in blocks 3-6, cross-attention and
# category loss at 3, 5, 6 (the paper's 7-12 / 7, 10, 12 scaled to 6 blocks)
TINY_MODEL: dict[str, Any] = dict(
    clip_model="sketchseg-tiny", pretrained=None, allow_random_init=True, image_size=64,
    vv_blocks=[3, 4, 5, 6], cross_attention_layers=[3, 5, 6], category_loss_layers=[3, 5, 6],
)


def tiny_cfg(**overrides: Any) -> ModelConfig:
    """``ModelConfig`` of the tiny model with ``overrides``."""
    return ModelConfig(**{**TINY_MODEL, **overrides})


def build_tiny(backbone: tuple, cfg: ModelConfig) -> SketchSegModel:
    """A ``SketchSegModel`` on a shared ``load_clip`` backbone; prompts, cross-attention and
    threshold initialised from seed 1, so models built alike start alike."""
    clip, tokenizer, mean_std = backbone
    torch.manual_seed(1)
    return SketchSegModel(clip, tokenizer, cfg, mean_std)


def cross_sketches(n: int, size: int = 64, margin: int = 14) -> torch.Tensor:
    """``n`` white (3, size, size) images with 8 black crosses (12-px arms) each, seeded."""
    g = torch.Generator().manual_seed(3)
    img = torch.ones(n, 3, size, size)
    for i in range(n):
        for _ in range(8):
            r, c = torch.randint(4, size - margin, (2,), generator=g).tolist()
            img[i, :, r, c : c + 12] = 0.0
            img[i, :, r : r + 12, c] = 0.0
    return img
