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

One writer, one reader: ``write_checkpoint`` writes every checkpoint (``save_checkpoint`` and the
Kedro dataset ``SafetensorsCheckpointDataset`` call it; it refuses metadata without the format, the
model config or the backbone fingerprint), ``read_checkpoint`` reads one back as ``{"state", "metadata"}``.

``load_model_from_checkpoint`` is the one loader (the api, the app, the evaluation, report and segment
nodes and the benchmarks use it): it builds the model a checkpoint file or a catalogued checkpoint
belongs to and loads it, through ``load_trainable_state`` (keys, shapes and backbone fingerprint
checked). Which configuration it builds is an explicit choice (``config_from``): by default the
checkpoint's own, where the caller may change only inference-time settings and where the CLIP weights
are (``model.config.OVERRIDABLE_KEYS``, logged on one line); any other difference is refused unless
the caller asks for its own configuration (``config_from="conf"``).
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
from sketchseg.model.clip_loader import looks_like_path
from sketchseg.model.config import OVERRIDABLE_KEYS, ModelConfig
from sketchseg.model.errors import CheckpointMismatchError, CheckpointNotFoundError, ModelConfigError
from sketchseg.model.model import SketchSegModel, build_model

logger = logging.getLogger(__name__)

FORMAT = "sketchseg-checkpoint-v1"
# the formats ``load_model_from_checkpoint`` reads (``write_checkpoint`` writes FORMAT, the only one)
KNOWN_FORMATS = (FORMAT,)
#: how ``load_model_from_checkpoint`` chooses the model configuration: "checkpoint" (default) = the
#: checkpoint's own, the caller's values only for ``OVERRIDABLE_KEYS``; "conf" = the caller's, as given
CONFIG_FROM = ("checkpoint", "conf")
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


def checkpoint_metadata(model: nn.Module, metadata: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The metadata strings of a checkpoint of ``model``: the caller's ``metadata`` (non-strings
    JSON-encoded; reserved keys refused) plus format, model config and the backbone's fingerprints."""
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = trainable_state_dict(model, with_clip_weights=with_clip_weights)
    meta = checkpoint_metadata(model, metadata)
    if with_clip_weights:
        meta["clip_weights"] = CLIP_WEIGHTS_INCLUDED
    return write_checkpoint(path, tensors, meta)


def write_checkpoint(path: str | os.PathLike[str], state: Mapping[str, torch.Tensor],
                     metadata: Mapping[str, str]) -> Path:
    """The one writer: ``state`` + ``metadata`` (``checkpoint_metadata``) to ``path``, atomically
    (a hidden file beside it, then a rename), metadata keys sorted (the same checkpoint, the same
    bytes). Metadata without the format, the model config or the backbone fingerprint is refused:
    every checkpoint sketchseg writes can be checked against the backbone it is loaded into."""
    from safetensors.torch import save_file

    meta = {str(k): str(v) for k, v in dict(metadata or {}).items()}
    lacking = [k for k in ("format", "model_config", "clip_fingerprint") if not meta.get(k)]
    if lacking or meta["format"] != FORMAT:
        raise ValueError(f"refusing to write checkpoint {path}: its metadata lacks {', '.join(lacking)} "
                         f"or is not format {FORMAT!r}; build it with checkpoint_metadata(model, ...)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    with fileio.atomic_path(path, hidden=True) as tmp:
        save_file(tensors, tmp, metadata=meta)
        sort_safetensors_metadata(tmp)
    logger.info("saved checkpoint %s (%d tensors, %d values)", path, len(tensors),
                sum(t.numel() for t in tensors.values()))
    return path


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The one reader: ``{"state": {name: Tensor}, "metadata": {str: str}}`` of a safetensors file
    (never unpickled). ``CheckpointNotFoundError`` for a missing file, ``CheckpointMismatchError``
    for one safetensors cannot read."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(path)
    state = {}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            for key in f.keys():
                state[key] = f.get_tensor(key)
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types
        raise CheckpointMismatchError(f"{path} is not a readable safetensors checkpoint ({exc})") from exc
    return {"state": state, "metadata": meta}


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
            f"backbone architecture differs (clip_fingerprint: checkpoint clip_model={meta.get('clip_model')!r}, "
            f"model clip_model={model.model_name!r}; another model, or the same with another activation "
            "(model.quick_gelu))"
        )
    elif meta and not meta.get("clip_fingerprint"):
        logger.warning("%s records no clip_fingerprint (written by an older sketchseg): its backbone "
                       "architecture cannot be checked; re-save it with this version", source)
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


def resolve_model_config(meta: Mapping[str, str], model_params: Mapping[str, Any] | ModelConfig | None,
                         source: object, *, config_from: str = "checkpoint") -> ModelConfig:
    """The configuration ``load_model_from_checkpoint`` builds, chosen by ``config_from``:

    * ``"checkpoint"`` (default): the checkpoint's own ``model_config``; ``model_params`` (a mapping of
      some keys, or a whole ``ModelConfig`` such as conf's) may change only ``OVERRIDABLE_KEYS``
      (inference-time settings, where the CLIP weights are): what it changes is logged on one line.
      A different value of any other key (the architecture, what was trained) raises
      ``CheckpointMismatchError`` in one line naming the keys.
    * ``"conf"``: ``model_params`` (a ``ModelConfig`` or a whole mapping) as given; the keys where it
      differs from the checkpoint's are logged. The checkpoint must still fit (keys, shapes, fingerprint).
    """
    if config_from not in CONFIG_FROM:
        raise ModelConfigError(f"config_from must be one of {list(CONFIG_FROM)}, got {config_from!r}")
    if config_from == "conf":
        if model_params is None:
            raise ModelConfigError(f"{source}: config_from='conf' needs the model configuration (model_params)")
        cfg = model_params if isinstance(model_params, ModelConfig) else ModelConfig.from_dict(model_params)
        if meta.get("model_config"):
            stored = ModelConfig.from_dict(_config_from_checkpoint(meta, source)).to_dict()
            differ = sorted(k for k, v in cfg.to_dict().items() if stored.get(k) != v)
            if differ:
                logger.info("%s: built with the given configuration (config_from=conf); it differs from the "
                            "checkpoint's in %s", source, ", ".join(differ))
        return cfg
    stored = ModelConfig.from_dict(_config_from_checkpoint(meta, source)).to_dict()
    given = model_params.to_dict() if isinstance(model_params, ModelConfig) else dict(model_params or {})
    merged = ModelConfig.from_dict({**stored, **given}).to_dict()  # unknown keys / bad values refused here
    changed = {k: (stored[k], merged[k]) for k in merged if merged[k] != stored.get(k)}
    refused = sorted(k for k in changed if k not in OVERRIDABLE_KEYS)
    if refused:
        listed = ", ".join(f"{k} ({changed[k][0]!r} -> {changed[k][1]!r})" for k in refused)
        raise CheckpointMismatchError(
            f"{source}: the given model configuration changes what the checkpoint was built and trained with: "
            f"{listed}; only inference-time settings may differ ({', '.join(OVERRIDABLE_KEYS)}); "
            "pass config_from='conf' (pipelines: evaluation.model_config=conf) to build the given configuration instead"
        )
    if changed:
        logger.info("%s: the checkpoint's model configuration with %s", source,
                    ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items())))
    return ModelConfig.from_dict(merged)


def clip_weights_beside(pretrained: str | None, checkpoint: str | os.PathLike[str]) -> Path | None:
    """Where a checkpoint's relative CLIP weight file (``model.pretrained``) is, found from the
    checkpoint's own folder: the file of that name beside it (a copied checkpoint with its backbone),
    else the first of its parent folders (nearest first) that holds that relative path, e.g. the
    project a ``<project>/data/06_models/sample/ours-sample/best.safetensors`` was trained in, whatever
    the working directory. None when ``pretrained`` is absent, a tag (``openai``), absolute, or found
    nowhere there. The one place a relative weight path is resolved (the loader, hence api and app)."""
    if not pretrained or not looks_like_path(pretrained):
        return None
    rec = Path(pretrained).expanduser()
    if rec.is_absolute():
        return None
    checkpoint = Path(checkpoint)
    for candidate in [checkpoint.parent / rec.name] + [folder / rec for folder in checkpoint.resolve().parents]:
        if candidate.is_file():
            return candidate
    return None


def _weights_beside(cfg: ModelConfig, checkpoint: Path) -> ModelConfig:
    """``cfg`` with its relative ``pretrained`` file as ``clip_weights_beside`` finds it."""
    found = clip_weights_beside(cfg.pretrained, checkpoint)
    if found is None:
        return cfg
    if found.resolve() != Path(str(cfg.pretrained)).expanduser().resolve():
        logger.info("CLIP weights %s: found beside the checkpoint at %s", cfg.pretrained, found)
    return dataclasses.replace(cfg, pretrained=str(found))


def _build(cfg: ModelConfig, meta: Mapping[str, str]) -> SketchSegModel:
    """The model of ``cfg``; its CLIP weights from ``model.pretrained`` unless the checkpoint holds them."""
    return build_model(cfg, weights_in_checkpoint=meta.get("clip_weights") == CLIP_WEIGHTS_INCLUDED)


def _check_format(meta: Mapping[str, str], source: object) -> None:
    fmt = meta.get("format")
    if fmt not in KNOWN_FORMATS:
        raise CheckpointMismatchError(
            f"{source} is not a sketchseg checkpoint (metadata format {fmt!r}, expected one of {list(KNOWN_FORMATS)})"
        )


def load_model_from_checkpoint(
    source: str | os.PathLike[str] | Mapping[str, Any],
    model_params: Mapping[str, Any] | ModelConfig | None = None,
    *,
    config_from: str = "checkpoint",
    strict: bool = True,
) -> tuple[SketchSegModel, ModelConfig, dict[str, str]]:
    """Build the model a checkpoint belongs to and load the checkpoint into it: the one loader.

    Parameters
    ----------
    source
        a checkpoint file (``write_checkpoint``: safetensors, never unpickled), or a catalogued
        checkpoint ``{"state": {name: Tensor}, "metadata": {str: str}}`` (``read_checkpoint``,
        ``SafetensorsCheckpointDataset``).
    model_params
        ``None`` = the checkpoint's own ``model_config``; a mapping or a ``ModelConfig`` = values
        that change it, within what ``config_from`` allows (``resolve_model_config``), e.g.
        ``{"pretrained": "/weights/ViT-B-16.safetensors"}`` offline or ``{"upsample_mode": "bilinear"}``.
    config_from
        ``"checkpoint"`` (default, the safe one): the checkpoint's architecture; ``model_params`` may
        change inference-time settings only, anything else is refused. ``"conf"``: ``model_params``
        as given (it must then be a whole configuration).
    strict
        see ``load_trainable_state``.

    Returns ``(model, cfg, metadata)``. The checkpoint must carry a known ``format`` and fit the
    model exactly (keys, shapes, backbone fingerprint), else ``CheckpointMismatchError`` says what differs.
    """
    if isinstance(source, Mapping):
        meta = {str(k): str(v) for k, v in dict(source.get("metadata") or {}).items()}
        name = meta.get("kind", "checkpoint")
        _check_format(meta, name)
        cfg = resolve_model_config(meta, model_params, name, config_from=config_from)
        model = _build(cfg, meta)
        load_trainable_state(model, source["state"], source=name, strict=strict, metadata=meta)
        return model, cfg, meta
    from safetensors.torch import load_file

    path = Path(source)
    meta = read_checkpoint_metadata(path)  # clear error for a missing / non-safetensors file
    _check_format(meta, path)
    cfg = resolve_model_config(meta, model_params, path, config_from=config_from)
    given = model_params.to_dict() if isinstance(model_params, ModelConfig) else dict(model_params or {})
    if config_from == "checkpoint" and "pretrained" not in given:
        cfg = _weights_beside(cfg, path)  # the weights it was trained from, not a namesake under the cwd
    check_file_fits(path, cfg.clip_model)  # a file claiming another backbone: refused before building it
    model = _build(cfg, meta)
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types
        raise CheckpointMismatchError(f"could not read checkpoint {path}: {exc}") from exc
    load_trainable_state(model, state, source=f"checkpoint {path}", strict=strict, metadata=meta)
    return model, cfg, meta
