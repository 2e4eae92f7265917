"""Checkpoints of the fine-tuned parts of a ``SketchSegModel`` (safetensors, atomic writes).

A checkpoint holds the trainable parameters plus every parameter that is not part of CLIP
(visual prompts, cross-attention, threshold), so together with the CLIP weights named by its
model config it reproduces the model. The safetensors metadata (strings only) holds:

* ``format`` = ``sketchseg-checkpoint-v1``,
* ``model_config``: the ``ModelConfig`` as JSON,
* ``clip_model``, ``clip_fingerprint`` (architecture: parameter names/shapes, activation),
  ``clip_weights_fingerprint`` (the patch embedding of the pretrained weights it started from),
* every key of the caller's ``metadata`` (non-strings JSON-encoded),
* ``clip_weights`` = ``included`` when the file holds every parameter of the model, CLIP's included
  (``save_checkpoint(..., with_clip_weights=True)``: a converted authors' checkpoint). Loading such a
  file never reads ``model.pretrained``: the backbone is created with seeded random weights, then
  every one of them is overwritten from the file (a missing one is an error).

``load_model_from_checkpoint`` is the one loader (the api, the evaluation and report nodes and the
benchmarks use it): it builds the model a checkpoint file or a catalogued checkpoint belongs to and
loads it, through ``load_trainable_state`` (keys, shapes and backbone checked).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import struct
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from sketchseg.model import fileio
from sketchseg.model.architecture import check_file_fits
from sketchseg.model.config import ModelConfig
from sketchseg.model.errors import CheckpointMismatchError, CheckpointNotFoundError
from sketchseg.model.model import SketchSegModel, build_model

logger = logging.getLogger(__name__)

FORMAT = "sketchseg-checkpoint-v1"
# formats ``load_model_from_checkpoint`` reads: written by ``save_checkpoint`` and by the training pipeline
KNOWN_FORMATS = (FORMAT, "sketchseg-trainable-v1")
RESERVED_KEYS = ("format", "model_config", "clip_model", "clip_fingerprint", "clip_weights_fingerprint",
                 "clip_weights")
CLIP_WEIGHTS_INCLUDED = "included"


def trainable_state_dict(model: nn.Module, *, with_clip_weights: bool = False) -> dict[str, torch.Tensor]:
    """Detached CPU copies of the parameters a checkpoint stores (see module docstring); every
    parameter of the model with ``with_clip_weights``."""
    if with_clip_weights:
        return {name: p.detach().to("cpu").contiguous().clone() for name, p in model.named_parameters()}
    names = set(model.checkpoint_parameter_names())
    return {
        name: p.detach().to("cpu").contiguous().clone()
        for name, p in model.named_parameters()
        if name in names
    }


def sort_safetensors_metadata(path: str | os.PathLike[str]) -> None:
    """Rewrite the header of the safetensors file ``path`` with its metadata keys sorted, in place.

    safetensors writes the metadata map in the hash order of the writing process, which changes
    from one process to the next: two runs that save the same tensors and metadata would write
    different bytes. Sorted, the same checkpoint is the same file (same sha256). The header keeps
    its length (the same items, padded with spaces), so the tensor data do not move."""
    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        meta = header.get("__metadata__")
        if not meta:
            return
        header["__metadata__"] = dict(sorted(meta.items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(text) > n:  # another JSON spelling than safetensors': leave the file as written
            return
        f.seek(8)
        f.write(text + b" " * (n - len(text)))


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


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, metadata: Mapping[str, Any] | None = None,
                    *, with_clip_weights: bool = False) -> Path:
    """Write ``trainable_state_dict(model)`` + metadata to ``path`` atomically (tmp file + os.replace);
    with ``with_clip_weights`` every parameter, CLIP's included (metadata ``clip_weights: included``)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = trainable_state_dict(model, with_clip_weights=with_clip_weights)
    meta = _metadata_strings(model, metadata)
    if with_clip_weights:
        meta["clip_weights"] = CLIP_WEIGHTS_INCLUDED
    with fileio.atomic_path(path, hidden=True) as tmp:
        save_file(tensors, tmp, metadata=meta)
        sort_safetensors_metadata(tmp)
    logger.info("saved checkpoint %s (%d tensors, %d values)", path, len(tensors),
                sum(t.numel() for t in tensors.values()))
    return path


def read_checkpoint_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata strings of a checkpoint, without reading its tensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(path)
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
    complete = meta.get("clip_weights") == CLIP_WEIGHTS_INCLUDED
    expected = set(params) if complete else set(model.checkpoint_parameter_names())
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
    if w_fp and w_fp != model.weights_fingerprint and not complete:
        logger.warning(
            "%s was trained from different CLIP weights than this model was built with "
            "(pretrained weights fingerprint differs); check model.pretrained", source,
        )
    with torch.no_grad():
        for key, value in state.items():
            if key in params and tuple(value.shape) == tuple(params[key].shape):
                params[key].copy_(value.to(device=params[key].device, dtype=params[key].dtype))
    logger.info("loaded %s (%d tensors)", source, len(state))


def _config_from_checkpoint(meta: Mapping[str, str], source: object) -> dict[str, Any]:
    """The ``model_config`` metadata of a checkpoint as a dict (``source`` names it in errors)."""
    raw = meta.get("model_config")
    if not raw:
        raise CheckpointMismatchError(
            f"{source} has no 'model_config' in its metadata; pass model_params (the model configuration it was trained with)"
        )
    try:
        cfg = json.loads(raw)
    except ValueError as exc:
        raise CheckpointMismatchError(f"{source}: its 'model_config' metadata is not valid JSON ({exc})") from exc
    if not isinstance(cfg, dict):
        raise CheckpointMismatchError(f"{source}: its 'model_config' metadata is not a JSON object")
    if meta.get("kind") == "authors" and "input_resize" not in cfg:
        # converted before model.input_resize existed: their preprocessing, as a conversion now records
        cfg["input_resize"] = "authors_bicubic_rgb8"
    return cfg


def _model_config(meta: Mapping[str, str], model_params: Mapping[str, Any] | ModelConfig | None,
                  source: object) -> ModelConfig:
    """``model_params`` as it is when a ``ModelConfig``, else the checkpoint's own configuration
    overridden by the given keys."""
    if isinstance(model_params, ModelConfig):
        return model_params
    merged = _config_from_checkpoint(meta, source) if (model_params is None or meta.get("model_config")) else {}
    merged.update(dict(model_params or {}))
    return ModelConfig.from_dict(merged)


def _weights_beside(cfg: ModelConfig, checkpoint: Path) -> ModelConfig:
    """``cfg`` with a relative ``pretrained`` file found from the checkpoint's own folders: the first
    of its parent folders (nearest first) that holds that relative path, e.g. the project a
    ``<project>/data/06_models/sample/ours-sample/best.safetensors`` was trained in, whatever the working
    directory. Unchanged when ``pretrained`` is absolute, a tag (``openai``) or found nowhere there."""
    pretrained = cfg.pretrained
    if not pretrained or Path(pretrained).is_absolute():
        return cfg
    for folder in checkpoint.resolve().parents:
        candidate = folder / pretrained
        if candidate.is_file():
            if candidate.resolve() != Path(pretrained).resolve():
                logger.info("CLIP weights %s: found beside the checkpoint at %s", pretrained, candidate)
            return dataclasses.replace(cfg, pretrained=str(candidate))
    return cfg


def _build(cfg: ModelConfig, meta: Mapping[str, str]) -> SketchSegModel:
    """The model of ``cfg``; its CLIP weights from ``model.pretrained`` unless the checkpoint holds them."""
    return build_model(cfg, weights_in_checkpoint=meta.get("clip_weights") == CLIP_WEIGHTS_INCLUDED)


def load_model_from_checkpoint(
    source: str | os.PathLike[str] | Mapping[str, Any],
    model_params: Mapping[str, Any] | ModelConfig | None = None,
    *,
    strict: bool = True,
) -> tuple[SketchSegModel, ModelConfig, dict[str, str]]:
    """Build the model a checkpoint belongs to and load the checkpoint into it: the one loader.

    Parameters
    ----------
    source
        a checkpoint file written by ``save_checkpoint`` or the training pipeline (safetensors,
        never unpickled), or a catalogued checkpoint ``{"state": {name: Tensor}, "metadata":
        {str: str}}`` (``SafetensorsCheckpointDataset``).
    model_params
        ``None`` = the checkpoint's own ``model_config`` metadata; a mapping = keys that override
        it (e.g. ``{"pretrained": "/weights/ViT-B-16.safetensors"}`` offline); a ``ModelConfig`` =
        used as it is.
    strict
        see ``load_trainable_state``.

    Returns ``(model, cfg, metadata)``. A file must carry a known ``format`` and fit the model
    exactly (keys, shapes, backbone architecture); a catalogued checkpoint is checked on keys and
    shapes (its metadata names it in messages). Else ``CheckpointMismatchError`` says what differs.
    """
    if isinstance(source, Mapping):
        meta = {str(k): str(v) for k, v in dict(source.get("metadata") or {}).items()}
        name = meta.get("kind", "checkpoint")
        cfg = _model_config(meta, model_params, name)
        model = _build(cfg, meta)
        load_trainable_state(model, source["state"], source=name, strict=strict,
                             metadata={"format": FORMAT, "clip_weights": meta["clip_weights"]} if "clip_weights" in meta else None)
        return model, cfg, meta
    from safetensors.torch import load_file

    path = Path(source)
    meta = read_checkpoint_metadata(path)  # clear error for a missing / non-safetensors file
    fmt = meta.get("format")
    if fmt not in KNOWN_FORMATS:
        raise CheckpointMismatchError(
            f"{path} is not a sketchseg checkpoint (metadata format {fmt!r}, expected one of {list(KNOWN_FORMATS)})"
        )
    cfg = _model_config(meta, model_params, path)
    if not isinstance(model_params, ModelConfig) and "pretrained" not in dict(model_params or {}):
        cfg = _weights_beside(cfg, path)  # the weights it was trained from, not a namesake under the cwd
    check_file_fits(path, cfg.clip_model)  # a file claiming another backbone: refused before building it
    model = _build(cfg, meta)
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types
        raise CheckpointMismatchError(f"could not read checkpoint {path}: {exc}") from exc
    load_trainable_state(model, state, source=f"checkpoint {path}", strict=strict, metadata={**meta, "format": FORMAT})
    return model, cfg, meta
