"""Sketch encoder, two-level training losses and inference (plain PyTorch + open_clip).

Heavy imports (torch, open_clip) happen on first attribute access, so importing a light
submodule (e.g. ``sketchseg.engine.metrics``) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ModelConfig": "sketchseg.model.config",
    "load_clip": "sketchseg.model.clip_loader",
    "SketchEncoder": "sketchseg.model.encoder",
    "EncoderOutput": "sketchseg.model.encoder",
    "SketchSegModel": "sketchseg.model.model",
    "build_model": "sketchseg.model.model",
    "save_checkpoint": "sketchseg.model.checkpoint",
    "load_checkpoint": "sketchseg.model.checkpoint",
    "trainable_state_dict": "sketchseg.model.checkpoint",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sketchseg.model' has no attribute {name!r}")
