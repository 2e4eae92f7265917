"""Held-out image-text alignment of the pre-trained tiny CLIP: zero-shot category accuracy of
single objects and scene -> caption retrieval."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sketchseg.data.sample import CATEGORIES
from sketchseg.pretrain.clip import MeanStd, to_model_input
from sketchseg.pretrain.config import STREAM_EVAL, PretrainConfig
from sketchseg.pretrain.pairs import EVAL_PROMPT, make_pair

__all__ = ["EvalSet", "build_eval_set", "evaluate_alignment"]


@torch.no_grad()
def _encode(model: nn.Module, tokenizer: Callable[..., torch.Tensor], images: torch.Tensor, texts: Sequence[str],
            mean_std: MeanStd, device: torch.device, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    img, txt = [], []
    for i in range(0, len(images), batch):
        img.append(F.normalize(model.encode_image(to_model_input(images[i:i + batch], *mean_std).to(device)), dim=-1))
    for i in range(0, len(texts), batch):
        txt.append(F.normalize(model.encode_text(tokenizer(list(texts[i:i + batch])).to(device)), dim=-1))
    return torch.cat(img), torch.cat(txt)


@dataclass
class EvalSet:
    singles: torch.Tensor                 # (C * k, S, S)
    labels: torch.Tensor                  # (C * k,) category index
    scenes: torch.Tensor                  # (n, S, S)
    captions: list[str]


def build_eval_set(cfg: PretrainConfig, image_size: int) -> EvalSet:
    """Held-out pairs (stream ``STREAM_EVAL``): ``eval_per_category`` single objects per category (at
    their natural size in scenes, whatever ``max_zoom``), and ``eval_scenes`` scenes."""
    cfg = dataclasses.replace(cfg, max_zoom=1.0)
    singles, labels = [], []
    i = 0
    for c_idx, cat in enumerate(CATEGORIES):
        for _ in range(cfg.eval_per_category):
            p = make_pair(cfg, STREAM_EVAL, i, image_size=image_size, kind="single", category=cat)
            singles.append(p.image)
            labels.append(c_idx)
            i += 1
    scenes = [make_pair(cfg, STREAM_EVAL, i + j, image_size=image_size, kind="scene") for j in range(cfg.eval_scenes)]
    empty = torch.empty(0, image_size, image_size, dtype=torch.uint8)
    return EvalSet(
        singles=torch.from_numpy(np.stack(singles)) if singles else empty,
        labels=torch.tensor(labels, dtype=torch.long),
        scenes=torch.from_numpy(np.stack([p.image for p in scenes])) if scenes else empty,
        captions=[str(p.caption) for p in scenes],
    )


def evaluate_alignment(model: nn.Module, tokenizer: Callable[..., torch.Tensor], mean_std: MeanStd,
                       eval_set: EvalSet, device: torch.device) -> dict[str, float]:
    """Held-out image-text alignment in percent: zero-shot category accuracy of single objects with
    the sketch model's prompts ("A sketch of tree."), and scene -> caption retrieval R@1."""
    was_training = model.training
    model.eval()
    out: dict[str, float] = {}
    if len(eval_set.singles):
        prompts = [EVAL_PROMPT.format(c) for c in CATEGORIES]
        img, txt = _encode(model, tokenizer, eval_set.singles, prompts, mean_std, device)
        pred = (img @ txt.t()).argmax(dim=1).cpu()
        out["zero_shot_acc"] = 100.0 * float((pred == eval_set.labels).float().mean())
        # how distinct the prompt embeddings are (random towers give ~1.0)
        sim = txt @ txt.t()
        n = sim.shape[0]
        out["prompt_cosine_mean"] = float((sim.sum() - sim.diagonal().sum()) / max(n * (n - 1), 1))
    if len(eval_set.scenes):
        img, txt = _encode(model, tokenizer, eval_set.scenes, eval_set.captions, mean_std, device)
        pred = (img @ txt.t()).argmax(dim=1).cpu()
        out["scene_r1"] = 100.0 * float((pred == torch.arange(len(pred))).float().mean())
    model.train(was_training)
    return out
