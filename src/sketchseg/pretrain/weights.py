"""Pre-trained weights as safetensors files: metadata, writing, and reuse of a file of the same config."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

import torch

from sketchseg.model.checkpoint import sort_safetensors_metadata
from sketchseg.pretrain.config import PretrainConfig

logger = logging.getLogger(__name__)

__all__ = ["WEIGHTS_FORMAT", "weights_metadata", "save_weights", "read_cached_weights"]

WEIGHTS_FORMAT = "open_clip-state-dict"


def weights_metadata(cfg: PretrainConfig, summary: Mapping[str, Any]) -> dict[str, str]:
    """safetensors metadata (str -> str) stored with the weights."""
    keep = ("steps", "final_loss_ema", "after_zero_shot_acc", "after_scene_r1", "seconds")
    return {
        "format": WEIGHTS_FORMAT,
        "clip_model": cfg.clip_model,
        "config_fingerprint": cfg.fingerprint(),
        "pretrain_config": json.dumps(cfg.to_dict(), sort_keys=True),
        **{k: str(summary.get(k)) for k in keep},
    }


def save_weights(path: str | Path, state: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> Path:
    """Write an open_clip state dict as safetensors (readable by ``clip_loader.load_clip``)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(path),
              metadata={str(k): str(v) for k, v in metadata.items()})
    sort_safetensors_metadata(path)  # the same weights, the same bytes
    return path


def read_cached_weights(path: str | Path, fingerprint: str) -> dict[str, Any] | None:
    """``{"state", "metadata"}`` of ``path`` when it holds pre-trained weights of the same config, else None."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            if meta.get("format") != WEIGHTS_FORMAT or meta.get("config_fingerprint") != fingerprint:
                return None
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - an unreadable cache is simply rebuilt
        logger.warning("cannot reuse %s (%s); pre-training again", path, exc)
        return None
    return {"state": state, "metadata": meta}
