"""Random weights in the key layout of the authors' released checkpoint (their DataParallel
``state_dict``): the recipe behind ``fixtures/authors_checkpoint_forward.npz``.

The fixture stores only the key names and shapes; ``regenerate`` rebuilds the weights from them and
the seed, and ``write_checkpoint`` writes them as the authors' file would be (``torch.save`` of a
dict whose keys start with ``module.``). The scratch script that made the fixture used these two
functions too (tests/conformance/README.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

# ``visual.attn`` is the same module object as the attention of the 6th-last visual block in their
# model (the last one their surgery loop builds: block index 6 of ViT-B/16), so its keys are aliases.
ALIAS_PREFIX = "visual.attn."


def alias_target(keys: Sequence[str]) -> str:
    """The key prefix ``visual.attn.*`` aliases: the attention of visual block ``n - 6``."""
    blocks = {int(k.split(".")[3]) for k in keys if k.startswith("visual.transformer.resblocks.")}
    return f"visual.transformer.resblocks.{len(blocks) - 6}.attn."


def scale(key: str, z: np.ndarray) -> np.ndarray:
    """The value of ``key`` from a standard normal draw ``z`` (float64) of its shape."""
    parts = key.split(".")
    last = parts[-1]
    prev = parts[-2] if len(parts) >= 2 else ""
    if (prev.startswith("ln_") and last == "weight") or (prev == "norm" and last == "a"):
        return 1.0 + 0.1 * z  # LayerNorm gains (CLIP's ln_*, their cross-attention's norm.a)
    if last in ("bias", "in_proj_bias") or (prev == "norm" and last == "b"):
        return 0.1 * z
    if key in ("visual.class_embedding", "visual.positional_embedding", "visual.prompt_embeddings",
               "token_embedding.weight"):
        return 0.5 * z
    if key == "positional_embedding":
        return 0.1 * z
    if key in ("visual.proj", "text_projection"):
        return z / np.sqrt(z.shape[0])  # used as x @ proj
    if key == "logit_scale":
        return np.log(1 / 0.07) + 0.0 * z
    return z / np.sqrt(np.prod(z.shape[1:]))  # fan-in


def regenerate(keys: Sequence[str], shapes: Sequence[Sequence[int]], seed: int) -> dict[str, torch.Tensor]:
    """``numpy.random.default_rng(seed)``; for every key in sorted order except the aliases,
    ``z = standard_normal(shape)`` then ``scale(key, z)``, cast to float32; aliases share their
    target's tensor."""
    rng = np.random.default_rng(seed)
    out: dict[str, torch.Tensor] = {}
    pairs = sorted((str(k), tuple(int(s) for s in shape)) for k, shape in zip(keys, shapes))
    for key, shape in pairs:
        if key.startswith(ALIAS_PREFIX):
            continue
        z = np.asarray(rng.standard_normal(shape), dtype=np.float64)
        out[key] = torch.from_numpy(np.asarray(scale(key, z), dtype=np.float32))
    target = alias_target(keys)
    for key, shape in pairs:
        if key.startswith(ALIAS_PREFIX):
            out[key] = out[target + key[len(ALIAS_PREFIX):]]
    return {k: out[k] for k in keys}


def write_checkpoint(state: dict[str, torch.Tensor], path: str | Path) -> Path:
    """``torch.save`` of the DataParallel state dict (every key prefixed ``module.``), as they did."""
    path = Path(path)
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    return path


def parse_shapes(values: Sequence[str]) -> list[tuple[int, ...]]:
    """Shapes stored as strings such as ``"768,3,16,16"`` (``""`` = a scalar)."""
    return [tuple(int(s) for s in str(v).split(",") if s != "") for v in values]
