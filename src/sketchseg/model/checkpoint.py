"""Checkpoints of the fine-tuned parts of a ``SketchSegModel`` (safetensors, atomic writes).

A checkpoint holds the trainable parameters plus every parameter that is not part of CLIP
(visual prompts, cross-attention, threshold), so together with the CLIP weights named by its
model config it reproduces the model. The safetensors metadata (strings only) holds:

* ``format`` = ``sketchseg-checkpoint-v1``,
* ``model_config``: the ``ModelConfig`` as JSON,
* ``clip_model``, ``clip_fingerprint`` (architecture: parameter names/shapes, activation),
  ``clip_weights_fingerprint`` (the patch embedding of the pretrained weights it started from),
* every key of the caller's ``metadata`` (non-strings JSON-encoded).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from sketchseg.errors import CheckpointMismatchError

logger = logging.getLogger(__name__)

FORMAT = "sketchseg-checkpoint-v1"
RESERVED_KEYS = ("format", "model_config", "clip_model", "clip_fingerprint", "clip_weights_fingerprint")


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached CPU copies of the parameters a checkpoint stores (see module docstring)."""
    names = set(model.checkpoint_parameter_names())
    return {
        name: p.detach().to("cpu").contiguous().clone()
        for name, p in model.named_parameters()
        if name in names
    }


def _metadata_strings(model: nn.Module, metadata: Mapping[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        key = str(key)
        if key in RESERVED_KEYS:
            raise ValueError(f"checkpoint metadata key '{key}' is reserved ({', '.join(RESERVED_KEYS)})")
        out[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    out.update(
        format=FORMAT,
        model_config=model.cfg.to_json(),
        clip_model=str(model.model_name),
        clip_fingerprint=str(model.clip_fingerprint),
        clip_weights_fingerprint=str(model.weights_fingerprint),
    )
    return out


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write ``trainable_state_dict(model)`` + metadata to ``path`` atomically (tmp file + os.replace)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = trainable_state_dict(model)
    meta = _metadata_strings(model, metadata)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("saved checkpoint %s (%d tensors, %d values)", path, len(tensors),
                sum(t.numel() for t in tensors.values()))
    return path


def read_checkpoint_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata strings of a checkpoint, without reading its tensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointMismatchError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types
        raise CheckpointMismatchError(f"{path} is not a readable safetensors checkpoint: {exc}") from exc


def load_trainable_state(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str = "state",
    strict: bool = True,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Load an in-memory ``trainable_state_dict`` (e.g. a catalogued checkpoint) into ``model``.

    With ``strict`` (default) any missing key (a parameter this model would save), unexpected key
    (not a parameter of this model), shape mismatch or (when ``metadata`` is given) backbone
    architecture mismatch raises ``CheckpointMismatchError`` listing them; otherwise the fitting
    tensors are loaded and the rest is logged. Keys that exist in the model but are frozen there
    are loaded too. ``source`` names the state in messages.
    """
    meta = dict(metadata or {})
    params = dict(model.named_parameters())
    expected = set(model.checkpoint_parameter_names())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - set(params))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(params[k].shape)}"
        for k, v in state.items()
        if k in params and tuple(v.shape) != tuple(params[k].shape)
    )
    problems: list[str] = []
    if meta and meta.get("format") != FORMAT:
        problems.append(f"format {meta.get('format')!r} is not {FORMAT!r}")
    if meta.get("clip_fingerprint") and meta.get("clip_fingerprint") != model.clip_fingerprint:
        problems.append(
            f"backbone architecture differs (checkpoint clip_model={meta.get('clip_model')!r}, "
            f"model clip_model={model.model_name!r})"
        )
    if missing:
        problems.append(f"missing keys ({len(missing)}): {missing[:20]}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {unexpected[:20]}")
    if mismatched:
        problems.append(f"shape mismatches ({len(mismatched)}): {mismatched[:20]}")
    if problems and strict:
        hint = f" Checkpoint model config: {meta['model_config']}" if meta.get("model_config") else (
            " Was it trained with another model configuration (finetune, num_visual_prompts, cross_attention, "
            "thresholding, clip_model)?"
        )
        raise CheckpointMismatchError(f"{source} does not fit this model: " + "; ".join(problems) + "." + hint)
    if problems:
        logger.warning("%s loaded non-strictly: %s", source, "; ".join(problems))
    w_fp = meta.get("clip_weights_fingerprint")
    if w_fp and w_fp != model.weights_fingerprint:
        logger.warning(
            "%s was trained from different CLIP weights than this model was built with "
            "(pretrained weights fingerprint differs); check model.pretrained", source,
        )
    with torch.no_grad():
        for key, value in state.items():
            if key in params and tuple(value.shape) == tuple(params[key].shape):
                params[key].copy_(value.to(device=params[key].device, dtype=params[key].dtype))
    logger.info("loaded %s (%d tensors)", source, len(state))


def load_checkpoint(path: str | os.PathLike[str], model: nn.Module, *, strict: bool = True) -> dict[str, str]:
    """Load a checkpoint file written by ``save_checkpoint`` into ``model``; returns its metadata.

    Checks as in ``load_trainable_state``, plus the metadata's format and backbone fingerprint.
    """
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_checkpoint_metadata(path)
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001
        raise CheckpointMismatchError(f"could not read checkpoint {path}: {exc}") from exc
    load_trainable_state(model, tensors, source=f"checkpoint {path}", strict=strict, metadata=meta)
    return meta


def load_model_from_checkpoint(checkpoint: dict[str, Any], model_params: dict[str, Any]):
    """Build the configured model and load a catalogued checkpoint into it (shapes and keys checked)."""
    from sketchseg.model.config import ModelConfig
    from sketchseg.model.model import build_model

    cfg = ModelConfig.from_dict(model_params)
    model = build_model(cfg)
    load_trainable_state(model, checkpoint["state"], source=str(checkpoint.get("metadata", {}).get("kind", "checkpoint")))
    return model, cfg
