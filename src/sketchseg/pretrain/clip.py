"""The randomly initialised (seeded) open_clip model that is pre-trained, and its image input."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from sketchseg.errors import SketchSegConfigError

__all__ = ["MeanStd", "create_tiny_clip", "to_model_input"]

MeanStd = tuple[tuple[float, ...], tuple[float, ...]]


def create_tiny_clip(clip_model: str, seed: int) -> tuple[nn.Module, Callable[..., torch.Tensor], MeanStd]:
    """A randomly initialised open_clip model (seeded), its tokenizer and image mean/std.

    QuickGELU stays off, as ``load_clip`` assumes for a local file whose path does not mention "openai".
    """
    import open_clip

    from sketchseg.model.clip_loader import OPENAI_MEAN, OPENAI_STD, register_model_configs, weights_follow

    register_model_configs()
    if clip_model not in open_clip.list_models():
        raise SketchSegConfigError(f"pretrain.clip_model '{clip_model}' is not an open_clip architecture")
    torch.manual_seed(int(seed))
    with weights_follow():  # random on purpose: the pre-training trains it, open_clip's notice would alarm
        model = open_clip.create_model(clip_model, pretrained=None, force_quick_gelu=False).float()
    visual = model.visual
    pp = getattr(visual, "preprocess_cfg", None) or {}
    mean = tuple(float(v) for v in pp.get("mean", getattr(visual, "image_mean", None) or OPENAI_MEAN))
    std = tuple(float(v) for v in pp.get("std", getattr(visual, "image_std", None) or OPENAI_STD))
    return model, open_clip.get_tokenizer(clip_model), (mean, std)


def to_model_input(grey_u8: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(B, S, S) uint8 grey (255 = paper) -> (B, 3, S, S) CLIP-normalised, as SketchSegModel feeds CLIP."""
    x = (grey_u8.float() / 255.0).unsqueeze(1).expand(-1, 3, -1, -1)
    m = torch.tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1)
    return (x - m) / s
