"""The pre-training loop (:func:`pretrain_clip`): AdamW with CLIP's weight-decay split, linear
warm-up then cosine decay, the InfoNCE loss plus the optional ink and multiple-instance losses."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sketchseg.data.sample import CATEGORIES
from sketchseg.pretrain.clip import create_tiny_clip, to_model_input
from sketchseg.pretrain.config import SEED_TAG, STREAM_TEXT, STREAM_TRAIN, PretrainConfig
from sketchseg.pretrain.evaluate import build_eval_set, evaluate_alignment
from sketchseg.pretrain.losses import contrastive_loss, ink_patch_loss, mil_loss, patch_ink, patch_label_loss
from sketchseg.pretrain.pairs import EVAL_PROMPT, PretrainPool, build_pool, single_object_text
from sketchseg.progress import Progress

logger = logging.getLogger(__name__)

__all__ = ["PretrainResult", "pretrain_clip"]


def _image_size(model: nn.Module) -> int:
    size = model.visual.image_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """CLIP's split: no weight decay on 1-d tensors (biases, LayerNorms, embeddings' scales) or logit_scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "logit_scale" in name or name.endswith("positional_embedding")
         or name.endswith("class_embedding") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_at(step: int, cfg: PretrainConfig) -> float:
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    span = max(cfg.steps - cfg.warmup_steps, 1)
    t = min(max(step - cfg.warmup_steps, 0) / span, 1.0)
    return cfg.learning_rate * 0.5 * (1.0 + math.cos(math.pi * t))


def _image_and_patches(model: nn.Module, images: torch.Tensor, encoder: nn.Module | None = None, *,
                       with_patches: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """L2-normalised image embeddings (B, D) (= ``encode_image``) and patch tokens (B, K, D) after
    ``ln_post`` and ``proj``, the space the sketch model's similarity maps live in: those of the
    v-v path when ``encoder`` (a :class:`SketchEncoder` with v-v blocks) is given. Without
    ``with_patches`` (no patch loss) only the image embeddings are computed; patches are None."""
    if not with_patches:
        return F.normalize(model.encode_image(images), dim=-1), None
    if encoder is not None:
        out = encoder(images, vv=True)
        return F.normalize(out.vst, dim=-1), F.normalize(out.patches, dim=-1)
    visual = model.visual
    previous = visual.output_tokens
    visual.output_tokens = True
    try:
        pooled, tokens = visual(images)
    finally:
        visual.output_tokens = previous
    return F.normalize(pooled, dim=-1), F.normalize(tokens @ visual.proj, dim=-1)


@dataclass
class PretrainResult:
    state: dict[str, torch.Tensor]        # open_clip state dict (CPU)
    history: list[dict[str, float]]       # per logged step: step, loss, lr, logit_scale
    summary: dict[str, Any] = field(default_factory=dict)


def _batch_texts(pool: PretrainPool, idx: Sequence[int], rng: np.random.Generator,
                 scene_group_offset: int) -> tuple[list[str], list[int]]:
    texts, groups = [], []
    cat_index = {c: i for i, c in enumerate(CATEGORIES)}
    for i in idx:
        if pool.kinds[i] == "single":
            cat = str(pool.categories[i])
            texts.append(single_object_text(rng, cat, pool.counts[i]))
            groups.append(cat_index[cat])
        else:
            texts.append(str(pool.captions[i]))
            groups.append(scene_group_offset + int(i))  # a scene is its own positive
    return texts, groups


def pretrain_clip(cfg: PretrainConfig, *, progress: bool = True, log_every: int = 10) -> PretrainResult:
    """Pre-train ``cfg.clip_model`` from a seeded random init; same config -> same weights (same machine and
    ``cfg.num_threads``, on CPU with torch's deterministic algorithms: ``engine.runtime.cpu_reproducible``)."""
    from sketchseg.engine.runtime import cpu_reproducible, resolve_device

    cfg.check()
    with cpu_reproducible(resolve_device(cfg.device), cfg.num_threads):
        return _pretrain(cfg, progress=progress, log_every=log_every)


def _pretrain(cfg: PretrainConfig, *, progress: bool, log_every: int) -> PretrainResult:
    from sketchseg.engine.runtime import resolve_device

    t_start = time.perf_counter()
    device = resolve_device(cfg.device)
    model, tokenizer, mean_std = create_tiny_clip(cfg.clip_model, cfg.seed)
    model.to(device)
    image_size = _image_size(model)
    patch_size = int(model.visual.conv1.kernel_size[0])
    patch_losses = cfg.ink_loss_weight > 0 or cfg.mil_loss_weight > 0 or cfg.patch_label_loss_weight > 0
    grid = image_size // patch_size if cfg.patch_label_loss_weight > 0 else 0  # patch labels only when used
    encoder = None
    if cfg.vv_blocks and patch_losses:
        from sketchseg.model.encoder import SketchEncoder

        encoder = SketchEncoder(model.visual, vv_blocks=cfg.vv_blocks)  # shares the weights, adds none
    with torch.no_grad():
        model.logit_scale.fill_(math.log(cfg.logit_scale_init))
    max_log_scale = math.log(cfg.logit_scale_max)

    t0 = time.perf_counter()
    pool = build_pool(cfg, STREAM_TRAIN, cfg.pool_size if cfg.steps > 0 else 0, image_size=image_size,
                      progress=progress, grid=grid)
    eval_set = build_eval_set(cfg, image_size)
    data_seconds = time.perf_counter() - t0
    before = evaluate_alignment(model, tokenizer, mean_std, eval_set, device)
    logger.info("tiny CLIP before pre-training: %s", {k: round(v, 3) for k, v in before.items()})

    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.learning_rate,
                                  betas=(0.9, 0.98), eps=1e-6)
    gen = torch.Generator().manual_seed(int(cfg.seed))
    text_rng = np.random.default_rng([SEED_TAG, int(cfg.seed), STREAM_TEXT])
    order = torch.empty(0, dtype=torch.long)
    prompt_tokens = tokenizer([EVAL_PROMPT.format(c) for c in CATEGORIES]).to(device)
    history: list[dict[str, float]] = []
    model.train()
    t1 = time.perf_counter()
    bar = Progress(range(cfg.steps), desc="pre-train tiny CLIP", unit="step", enabled=progress)
    batch_size = min(cfg.batch_size, max(len(pool), 1))
    loss_ema: float | None = None
    for step in bar:
        if len(order) < batch_size:  # a new shuffled pass over the pool
            order = torch.cat([order, torch.randperm(len(pool), generator=gen)])
        idx, order = order[:batch_size].tolist(), order[batch_size:]
        texts, groups = _batch_texts(pool, idx, text_rng, len(CATEGORIES))
        images = to_model_input(pool.images[idx], *mean_std).to(device)
        tokens = tokenizer(texts).to(device)
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, cfg)
        pooled, patches = _image_and_patches(model, images, encoder, with_patches=patch_losses)
        txt = F.normalize(model.encode_text(tokens), dim=-1)
        scale = model.logit_scale.exp()
        loss_clip = contrastive_loss(pooled, txt, scale, groups)
        loss = loss_clip
        loss_ink = loss_mil = loss_label = None
        prompt_emb = batch_ink = None
        if cfg.ink_loss_weight > 0 or cfg.patch_label_loss_weight > 0:  # mean ink per patch, shared by both terms
            batch_ink = patch_ink(pool.images[idx], patch_size, cfg.min_patch_ink).to(device)
        if cfg.mil_loss_weight > 0 or cfg.patch_label_loss_weight > 0:
            prompt_emb = F.normalize(model.encode_text(prompt_tokens), dim=-1)
        if cfg.ink_loss_weight > 0:
            single = torch.tensor([pool.kinds[i] == "single" for i in idx], dtype=torch.float32, device=device)
            ink = batch_ink * single[:, None]
            loss_ink = ink_patch_loss(patches, txt, scale, ink, groups)
            loss = loss + cfg.ink_loss_weight * loss_ink
        if cfg.mil_loss_weight > 0:
            present = torch.tensor([[c in pool.objects[i] for c in CATEGORIES] for i in idx], device=device)
            loss_mil = mil_loss(patches, prompt_emb, scale, present, cfg.mil_temperature)
            loss = loss + cfg.mil_loss_weight * loss_mil
        if cfg.patch_label_loss_weight > 0:
            inked = (batch_ink > 0).float()
            loss_label = patch_label_loss(patches, prompt_emb, scale, pool.patch_labels[idx].to(device), inked)
            loss = loss + cfg.patch_label_loss_weight * loss_label
        if not torch.isfinite(loss.detach()):
            raise FloatingPointError(f"non-finite pre-training loss at step {step}; lower pretrain.learning_rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0.0, max_log_scale)
        value = float(loss.detach())
        loss_ema = value if loss_ema is None else 0.9 * loss_ema + 0.1 * value
        if step % log_every == 0 or step == cfg.steps - 1:
            history.append({"step": step, "loss": value, "loss_ema": loss_ema, "loss_clip": float(loss_clip.detach()),
                            "loss_ink": float(loss_ink.detach()) if loss_ink is not None else float("nan"),
                            "loss_mil": float(loss_mil.detach()) if loss_mil is not None else float("nan"),
                            "loss_label": float(loss_label.detach()) if loss_label is not None else float("nan"),
                            "lr": _lr_at(step, cfg), "logit_scale": float(model.logit_scale.detach().exp())})
            bar.set_postfix(loss=f"{loss_ema:.3f}")
    train_seconds = time.perf_counter() - t1

    after = evaluate_alignment(model, tokenizer, mean_std, eval_set, device)
    model.eval()
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    summary: dict[str, Any] = {
        "clip_model": cfg.clip_model,
        "config_fingerprint": cfg.fingerprint(),
        "steps": cfg.steps,
        "pairs_seen": cfg.steps * batch_size,
        "pool_size": len(pool),
        "first_loss": history[0]["loss"] if history else None,
        "final_loss_ema": loss_ema,
        "final_logit_scale": float(model.logit_scale.detach().exp()),
        **{f"before_{k}": v for k, v in before.items()},
        **{f"after_{k}": v for k, v in after.items()},
        "data_seconds": round(data_seconds, 2),
        "train_seconds": round(train_seconds, 2),
        "seconds": round(time.perf_counter() - t_start, 2),
        "torch_threads": torch.get_num_threads(),
        "config": cfg.to_dict(),
    }
    logger.info(
        "tiny CLIP pre-trained: %d steps in %.1fs (data %.1fs), loss %.3f -> %.3f, zero-shot acc %.1f%% -> %.1f%%, "
        "scene R@1 %.1f%% -> %.1f%%", cfg.steps, train_seconds, data_seconds,
        summary["first_loss"] or float("nan"), loss_ema if loss_ema is not None else float("nan"),
        before.get("zero_shot_acc", float("nan")), after.get("zero_shot_acc", float("nan")),
        before.get("scene_r1", float("nan")), after.get("scene_r1", float("nan")),
    )
    return PretrainResult(state=state, history=history, summary=summary)
