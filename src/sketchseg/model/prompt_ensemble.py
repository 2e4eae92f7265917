"""Test-time prompt ensemble (the authors' evaluation code; not in the paper).

The paper scores every category with one prompt, "A sketch of <category>." (§3.2, §3.4). The
authors' evaluation instead embeds each class name with 85 templates (CLIP's 80 ImageNet
templates and 5 "scene" templates), averages the normalised embeddings, and subtracts the same
ensemble built for the empty string ("redundant features", from CLIP Surgery). This module builds
that embedding from any text encoder; ``model.inference_prompts: ensemble`` switches it on.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

# the five templates the authors' evaluation adds to CLIP's 80 ImageNet templates
SCENE_TEMPLATES: tuple[str, ...] = (
    "there is a {} in the scene.",
    "there is the {} in the scene.",
    "this is a {} in the scene.",
    "this is the {} in the scene.",
    "this is one {} in the scene.",
)

_EPS = 1e-6


def ensemble_templates() -> tuple[str, ...]:
    """The 85 templates (each with one ``{}``): CLIP's 80 ImageNet templates, as open_clip ships
    them, then ``SCENE_TEMPLATES``."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    imagenet = tuple(make("{}") for make in OPENAI_IMAGENET_TEMPLATES)
    if len(imagenet) != 80 or any(t.count("{}") != 1 for t in imagenet):
        raise RuntimeError(
            f"open_clip's OPENAI_IMAGENET_TEMPLATES changed ({len(imagenet)} templates): "
            "the 85-template ensemble expects CLIP's 80 ImageNet templates"
        )
    return imagenet + SCENE_TEMPLATES


def ensemble_embeddings(encode: Callable[[list[str]], torch.Tensor], names: Sequence[str],
                        templates: Sequence[str], *, subtract_empty: bool = True) -> torch.Tensor:
    """Category embeddings (N, D). For every name: the unit-norm mean of the unit-norm embeddings
    of the name in every template; minus the same mean for the empty string when
    ``subtract_empty``. The difference is not re-normalised (the authors' code); Eq. 3's cosine
    similarity normalises it anyway, and a min-max normalised map is unchanged by any positive
    scale. ``encode`` embeds a list of strings (one text-tower call for all of them)."""
    if not templates:
        raise ValueError("the prompt ensemble needs at least one template")
    bad = [t for t in templates if t.count("{}") != 1]
    if bad:
        raise ValueError(f"ensemble templates must hold exactly one '{{}}', got {bad}")
    if not names:
        raise ValueError("ensemble_embeddings needs at least one category name")
    rows = list(names) + ([""] if subtract_empty else [])
    emb = encode([t.format(name) for name in rows for t in templates]).float()
    emb = F.normalize(emb, dim=-1, eps=_EPS).reshape(len(rows), len(templates), -1)
    means = F.normalize(emb.mean(dim=1), dim=-1, eps=_EPS)
    if subtract_empty:
        return means[:-1] - means[-1:]
    return means
