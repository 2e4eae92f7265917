"""Does a checkpoint's tensors fit the CLIP architecture its metadata names? Checked on the file's
header, before any model is built.

A checkpoint's ``model_config`` names its backbone (``clip_model``); building that backbone is the
expensive step (ViT-bigG-14: about 10 GB and a minute). A file whose metadata claims one
architecture while its tensors come from another (a hand-edited or hostile file, a mix-up of
configurations) must be refused before that, from the shapes alone: the visual tower's width,
its number of blocks and the joint embedding size that open_clip's configuration of that name
gives, against the shapes of the tensors that carry them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from sketchseg.model.errors import CheckpointMismatchError

__all__ = ["architecture_dims", "check_file_fits", "shape_problems"]

_BLOCK = re.compile(r"(?:^|\.)visual\.transformer\.resblocks\.(\d+)\.")


def architecture_dims(clip_model: str) -> dict[str, int] | None:
    """``{"width", "layers", "embed_dim"}`` of open_clip's configuration ``clip_model`` (sketchseg's
    own configurations registered), or None when open_clip has no such name."""
    import open_clip

    from sketchseg.model.clip_loader import register_model_configs

    register_model_configs()
    cfg = open_clip.get_model_config(clip_model)
    if not cfg:
        return None
    vision = cfg.get("vision_cfg") or {}
    try:
        return {"width": int(vision["width"]), "layers": int(vision["layers"]), "embed_dim": int(cfg["embed_dim"])}
    except (KeyError, TypeError, ValueError):
        return None


def shape_problems(shapes: Mapping[str, Sequence[int]], dims: Mapping[str, Any]) -> list[str]:
    """What in ``shapes`` (tensor name -> shape) contradicts ``dims`` (:func:`architecture_dims`):
    a visual LayerNorm whose size is not the width, a block index beyond the last block, a
    cross-attention text projection whose input is not the embedding size. Empty when nothing does."""
    width, layers, embed = int(dims["width"]), int(dims["layers"]), int(dims["embed_dim"])
    problems: list[str] = []
    for name, shape in sorted(shapes.items()):
        shape = tuple(int(s) for s in shape)
        block = _BLOCK.search(name)
        if block and int(block.group(1)) >= layers:
            problems.append(f"{name}: block {int(block.group(1)) + 1} of a {layers}-block visual tower")
        elif ".visual." in f".{name}" and re.search(r"\.ln_(1|2|pre|post)\.(weight|bias)$", name) and shape != (width,):
            problems.append(f"{name}: shape {shape}, the visual width is {width}")
        elif name.endswith("text_proj.weight") and len(shape) == 2 and shape[1] != embed:
            problems.append(f"{name}: shape {shape}, the text embedding size is {embed}")
        if len(problems) >= 5:
            break
    return problems


def check_file_fits(path: str | os.PathLike[str], clip_model: str) -> None:
    """Raise ``CheckpointMismatchError`` when the tensors of the safetensors file ``path`` (read from
    its header only) contradict the architecture ``clip_model``; nothing for a name open_clip does
    not know (building it says so)."""
    from safetensors import safe_open

    dims = architecture_dims(clip_model)
    if dims is None:
        return
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types
        raise CheckpointMismatchError(f"could not read checkpoint {path}: {exc}") from exc
    problems = shape_problems(shapes, dims)
    if problems:
        raise CheckpointMismatchError(
            f"{path}: its tensors do not fit the backbone its model_config names ({clip_model}: width "
            f"{dims['width']}, {dims['layers']} blocks, embedding {dims['embed_dim']}): " + "; ".join(problems)
            + "; refused before building that model")
