"""Fingerprints of a CLIP backbone: which architecture and which pretrained weights a checkpoint
belongs to (stored in its metadata by ``checkpoint.save_checkpoint``)."""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def architecture_fingerprint(clip_model: nn.Module, model_name: str) -> str:
    """sha256 over the open_clip model name, every parameter/buffer name and shape, and the
    activation type: identifies the backbone architecture a checkpoint belongs to."""
    h = hashlib.sha256(model_name.encode())
    for key, value in sorted(clip_model.state_dict().items()):
        h.update(f"{key}:{tuple(value.shape)};".encode())
    act = [type(m).__name__ for m in clip_model.modules() if type(m).__name__ in ("GELU", "QuickGELU")]
    h.update(("|".join(sorted(set(act)))).encode())
    return h.hexdigest()


def weights_fingerprint(clip_model: nn.Module) -> str:
    """sha256 of the patch-embedding weights: tells pretrained weight sets apart cheaply."""
    w = clip_model.visual.conv1.weight.detach().to("cpu", torch.float32).contiguous()
    return hashlib.sha256(w.numpy().tobytes()).hexdigest()
