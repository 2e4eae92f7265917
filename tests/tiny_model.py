"""The tiny random-weight model configuration shared by the model unit tests."""

from __future__ import annotations

from typing import Any

from sketchseg.model.config import ModelConfig

# sketchseg-tiny: 64 px, 6 blocks, width 96; v-v path in blocks 3-6, cross-attention and
# category loss at 3, 5, 6 (the paper's 7-12 / 7, 10, 12 scaled to 6 blocks)
TINY_MODEL: dict[str, Any] = dict(
    clip_model="sketchseg-tiny", pretrained=None, allow_random_init=True, image_size=64,
    vv_blocks=[3, 4, 5, 6], cross_attention_layers=[3, 5, 6], category_loss_layers=[3, 5, 6],
)


def tiny_cfg(**overrides: Any) -> ModelConfig:
    """``ModelConfig`` of the tiny model with ``overrides``."""
    return ModelConfig(**{**TINY_MODEL, **overrides})
