"""The two-level sketch segmentation model (paper §3, Fig. 2).

Level I (holistic): the sketch is encoded with the two-path encoder; its VST (original path) is
pulled to its caption embedding with a hardest-negative triplet loss (Eq. 1). With
``holistic_token='vv'`` the v-v path's token 0 takes the VST's place (fine-tuned CLIP Surgery**,
Tab. 2, where the v-v path must be trained through the holistic loss alone).

Level II (category): for each category c of sketch b, the patch features (v-v path) give a
similarity map with the category prompt embedding CCT (Eq. 3) -> min-max normalised ->
upsampled to the input size -> thresholded by a learnable threshold (straight-through) ->
multiplied with the ink: the category image ``1 - ink * mask``. All category images of the batch
are re-encoded in one pass with text-to-sketch cross-attention, and their VCTs from several
layers are pulled to their CCT (category triplet loss). Total loss Eq. 4.

Inputs are pixel images (B, 3, H, W), float in [0, 1], black ink on a white background; the model
resizes them to ``cfg.image_size`` (bilinear, antialiased) when needed and applies the CLIP
mean/std itself. Ink = 1 - mean over channels.

Differences from the authors' code (see shared/reference/official-code-notes.md): the threshold
receives a gradient (straight-through estimator), the cross-attention depends on the text,
similarity maps are upsampled bicubically, features are normalised over the feature axis, and the
v-v path exists from construction on (so the optimiser sees every parameter).

Speed (``cfg.implementation``, see ``Levers``): the "fast" implementation and the "reference"
(straightforward) one compute the same losses and maps up to float rounding
(tests/model/test_fast_vs_reference.py); benchmarks/bench_model.py measures both.

Data-parallel training: ``training_losses(..., gather=...)`` computes the loss of the GLOBAL batch
spread over several processes (see ``LossGather``): hardest negatives are mined among the caption
and category-prompt embeddings of every process (text embeddings are frozen, so only they are
gathered, no image features), and each process's share is scaled so that the gradients averaged by
DistributedDataParallel equal those of one process holding the whole batch.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from typing import Callable, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sketchseg.errors import SketchSegConfigError
from sketchseg.model.clip_loader import MeanStd, load_clip
from sketchseg.model.config import ModelConfig
from sketchseg.model.encoder import EncoderOutput, SketchEncoder
from sketchseg.model.losses import category_loss, holistic_loss, pairwise_distance, rowwise_distance
from sketchseg.model.prompt_ensemble import ensemble_embeddings, ensemble_templates
from sketchseg.model.similarity import (
    LearnableThreshold,
    minmax_normalise,
    patch_similarity,
    threshold_mask,
    upsample,
)
from sketchseg.model.text_tower import TextTower

logger = logging.getLogger(__name__)

_TEXT_BATCH = 64
_TEXT_CACHE_MAX = 200_000


def architecture_fingerprint(clip_model: nn.Module, model_name: str) -> str:
    """sha256 over the open_clip model name, every parameter/buffer name and shape, and the
    activation type: identifies the backbone architecture a checkpoint belongs to."""
    h = hashlib.sha256(model_name.encode())
    for key, value in sorted(clip_model.state_dict().items()):
        h.update(f"{key}:{tuple(value.shape)};".encode())
    act = [type(m).__name__ for m in clip_model.modules() if type(m).__name__ in ("GELU", "QuickGELU")]
    h.update(("|".join(sorted(set(act)))).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Levers:
    """Implementation switches of ``SketchSegModel``; none changes a result beyond float rounding.

    sdpa
        ``F.scaled_dot_product_attention`` for the q-k and v-v paths (else explicit matmul-softmax).
    shared_qkv
        the v-v path reuses the block's q/k/v projection (else it projects its values itself).
    batched_categories
        all category images of a batch re-encoded in one pass (else one pass per category slot:
        the first category of every sketch, then the second, ...).
    text_cache
        caption / prompt embeddings cached by string (the text tower is frozen); else every call
        runs the text tower on exactly the strings it is given.
    device_losses
        "same string" masks and pair indices built once on the host and copied asynchronously
        (pinned memory), loss reductions without host syncs; else the losses of ``losses.py``.
    """

    sdpa: bool = True
    shared_qkv: bool = True
    batched_categories: bool = True
    text_cache: bool = True
    device_losses: bool = True

    @classmethod
    def for_implementation(cls, implementation: str) -> Levers:
        if implementation == "fast":
            return cls()
        if implementation == "reference":
            return cls(**{f.name: False for f in fields(cls)})
        raise SketchSegConfigError(f"model.implementation must be 'fast' or 'reference', got {implementation!r}")


class LossGather(Protocol):
    """What ``training_losses`` needs from a data-parallel process group (engine/distributed.py).

    ``gather_rows(emb (n, D), ids (n,), pad_to)`` pads the local rows to ``pad_to``, gathers them
    from every process in rank order and returns ``(emb (W*pad_to, D), ids (W*pad_to,), valid
    (W*pad_to,) bool)``; ``all_reduce_sum`` sums a tensor over the processes (no gradient).
    ``max_captions`` / ``max_pairs`` bound one process's captions / category pairs per batch.
    """

    world_size: int
    max_captions: int
    max_pairs: int

    def gather_rows(self, emb: torch.Tensor, ids: torch.Tensor,
                    pad_to: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor: ...


@functools.lru_cache(maxsize=1 << 16)
def _string_id(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


def string_ids(texts: Sequence[str]) -> torch.Tensor:
    """Stable signed 64-bit ids of strings (blake2b; equal in every process), as a CPU LongTensor."""
    return torch.tensor([_string_id(t) for t in texts], dtype=torch.long)


def triplet_sum_count(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    candidates: torch.Tensor,
    excluded: torch.Tensor,
    margin: float,
    distance: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``losses.triplet_hardest_negative`` split into (sum over anchors, number of anchors with a
    valid negative), so that the mean can be taken over several processes. ``excluded`` (N, M)."""
    d_pos = rowwise_distance(anchors, positives, distance)
    d_all = pairwise_distance(anchors, candidates, distance)
    d_neg = torch.where(excluded, torch.full_like(d_all, float("inf")), d_all)
    hardest = d_neg.amin(dim=1) if candidates.shape[0] > 0 else torch.full_like(d_pos, float("inf"))
    valid = torch.isfinite(hardest)
    per_anchor = torch.clamp(d_pos - torch.where(valid, hardest, d_pos) + margin, min=0.0)
    per_anchor = torch.where(valid, per_anchor, torch.zeros_like(per_anchor))
    return per_anchor.sum(), valid.sum()


def weights_fingerprint(clip_model: nn.Module) -> str:
    """sha256 of the patch-embedding weights: tells pretrained weight sets apart cheaply."""
    w = clip_model.visual.conv1.weight.detach().to("cpu", torch.float32).contiguous()
    return hashlib.sha256(w.numpy().tobytes()).hexdigest()


class SketchSegModel(nn.Module):
    """Sketch encoder + frozen text tower + category-level modules.

    Parameters
    ----------
    clip_model
        an open_clip ``CLIP`` with a ViT visual tower (weights are shared, not copied).
    tokenizer
        its open_clip tokenizer (``list[str] -> LongTensor``).
    cfg
        the model configuration (validated against the backbone here).
    mean_std
        CLIP image normalisation ``((mean_r, mean_g, mean_b), (std_r, std_g, std_b))``.
    """

    def __init__(
        self,
        clip_model: nn.Module,
        tokenizer: Callable[..., torch.Tensor],
        cfg: ModelConfig,
        mean_std: MeanStd | None = None,
    ) -> None:
        super().__init__()
        visual = getattr(clip_model, "visual", None)
        if visual is None or not hasattr(visual, "transformer"):
            raise SketchSegConfigError(f"{cfg.clip_model}: only open_clip CLIP models with a ViT visual tower are supported")
        n_layers = len(visual.transformer.resblocks)
        cfg.validate(n_layers)
        patch = int(visual.conv1.kernel_size[0])
        if cfg.image_size % patch != 0:
            raise SketchSegConfigError(
                f"model.image_size {cfg.image_size} is not a multiple of the {cfg.clip_model} patch size {patch}"
            )
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.model_name = cfg.clip_model
        self.clip_fingerprint = architecture_fingerprint(clip_model, cfg.clip_model)
        self.weights_fingerprint = weights_fingerprint(clip_model)

        use_ca = cfg.use_category_level and cfg.cross_attention
        embed_dim = int(visual.proj.shape[-1])
        self.embed_dim = embed_dim
        self.levers = Levers.for_implementation(cfg.implementation)
        self.encoder = SketchEncoder(
            visual,
            num_prompts=cfg.num_visual_prompts,
            prompt_init_range=cfg.visual_prompt_init_range,
            prompt_dropout=cfg.prompt_dropout,
            vv_blocks=cfg.vv_blocks,
            cross_attention_layers=cfg.cross_attention_layers if use_ca else (),
            embed_dim=embed_dim,
            cross_attention_dropout=cfg.cross_attention_dropout,
            attention="sdpa" if self.levers.sdpa else "manual",
            shared_qkv=self.levers.shared_qkv,
        )
        self.text = TextTower(clip_model)
        self.threshold: LearnableThreshold | None = (
            LearnableThreshold(cfg.threshold_init)
            if cfg.use_category_level and cfg.thresholding == "learnable"
            else None
        )
        mean, std = mean_std if mean_std is not None else ((0.48145466, 0.4578275, 0.40821073),
                                                           (0.26862954, 0.26130258, 0.27577711))
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1),
                             persistent=False)
        self._text_cache: dict[str, torch.Tensor] = {}
        self._ensemble_cache: dict[tuple[str, bool], torch.Tensor] = {}  # (name, subtract_empty) -> embedding
        self._apply_finetune()
        counts = self.parameter_counts()
        logger.info(
            "SketchSegModel(%s, finetune=%s): %d trainable of %d parameters (%.2f%%)",
            cfg.clip_model, cfg.finetune, counts["trainable"], counts["total"],
            100.0 * counts["trainable"] / max(counts["total"], 1),
        )

    # ------------------------------------------------------------------ parameters
    def _apply_finetune(self) -> None:
        for p in self.parameters():
            p.requires_grad_(False)
        visual = self.encoder.visual
        strategy = self.cfg.finetune
        if strategy in ("ln", "ln_prompts", "ln_prompts_ca"):
            for module in visual.modules():
                if isinstance(module, nn.LayerNorm):
                    for p in module.parameters():
                        p.requires_grad_(True)
        if strategy == "full":
            for p in visual.parameters():
                p.requires_grad_(True)
        if strategy == "ln_prompts_ca":  # the blocks' own attention projections where CCT joins in
            for layer in self.cfg.cross_attention_layers:
                for p in visual.transformer.resblocks[layer - 1].attn.parameters():
                    p.requires_grad_(True)
        if strategy in ("prompts", "ln_prompts", "ln_prompts_ca", "full") and self.encoder.prompts is not None:
            for p in self.encoder.prompts.parameters():
                p.requires_grad_(True)
        for module in self.added_modules():
            for p in module.parameters():
                p.requires_grad_(True)
        for p in self.text.parameters():  # text tower and logit_scale: always frozen
            p.requires_grad_(False)

    def added_modules(self) -> list[nn.Module]:
        """Modules that are not part of CLIP (always saved in checkpoints): cross-attention, threshold."""
        mods: list[nn.Module] = []
        if self.encoder.cross_attention is not None:
            mods.append(self.encoder.cross_attention)
        if self.threshold is not None:
            mods.append(self.threshold)
        return mods

    def checkpoint_parameter_names(self) -> list[str]:
        """Names saved by ``trainable_state_dict``: trainable parameters plus every non-CLIP one."""
        extra: set[int] = set()
        for module in self.added_modules() + ([self.encoder.prompts] if self.encoder.prompts is not None else []):
            extra.update(id(p) for p in module.parameters())
        return [n for n, p in self.named_parameters() if p.requires_grad or id(p) in extra]

    def parameter_counts(self) -> dict[str, int]:
        """``{"trainable": ..., "total": ...}`` (each shared tensor counted once)."""
        params = list(self.parameters())
        return {
            "trainable": int(sum(p.numel() for p in params if p.requires_grad)),
            "total": int(sum(p.numel() for p in params)),
        }

    def train(self, mode: bool = True) -> SketchSegModel:
        super().train(mode)
        self.text.eval()  # frozen tower: always in eval mode
        return self

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001 - torch's signature
        self._text_cache = {}  # cached embeddings live on the old device / dtype
        self._ensemble_cache = {}
        return super()._apply(fn, recurse)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    # ------------------------------------------------------------------ implementation
    def set_levers(self, **changes: bool) -> Levers:
        """Switch implementation levers (see ``Levers``) on this model; returns the new set."""
        known = [f.name for f in fields(Levers)]
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise ValueError(f"unknown levers {unknown}; known: {known}")
        self.levers = replace(self.levers, **changes)
        self.encoder.attention_impl = "sdpa" if self.levers.sdpa else "manual"
        self.encoder.shared_qkv = self.levers.shared_qkv
        return self.levers

    def compile_encoder(self, **compile_kwargs) -> None:  # noqa: ANN003 - torch.compile's options
        """Run the sketch encoder through ``torch.compile`` from now on (opt-in; shapes are dynamic
        because the number of category images changes from batch to batch). The compiled wrapper is
        not a submodule: state dicts and checkpoints are unchanged."""
        compile_kwargs.setdefault("dynamic", True)
        self.__dict__["_compiled_encoder"] = torch.compile(self.encoder, **compile_kwargs)
        logger.info("sketch encoder compiled with torch.compile(%s)", compile_kwargs)

    def _encode(self, pixels_normalised: torch.Tensor, **kwargs) -> EncoderOutput:  # noqa: ANN003
        compiled = self.__dict__.get("_compiled_encoder")
        encoder = self.encoder if compiled is None else compiled
        return encoder(pixels_normalised, **kwargs)

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        """Host tensor -> model device; on CUDA through pinned memory without blocking the host."""
        device = self.device
        if device.type == "cuda" and self.levers.device_losses:
            return t.pin_memory().to(device, non_blocking=True)
        return t.to(device)

    def _index(self, values: Sequence[int]) -> torch.Tensor:
        return self._to_device(torch.tensor(list(values), dtype=torch.long))

    # ------------------------------------------------------------------ text
    def _text_batches(self, texts: list[str], *, padded: bool) -> Iterator[torch.Tensor]:
        """Normalised fp32 embeddings of ``texts`` in chunks of ``_TEXT_BATCH``; ``padded``: every
        chunk is a full, fixed-shape batch (padded with empty strings), so that a text's embedding
        is bit-identical whatever it is encoded with (a resumed run, with an empty cache, then
        reproduces an uninterrupted one exactly)."""
        device = self.device
        was_training = self.text.training
        self.text.eval()
        try:
            with torch.no_grad(), torch.autocast(device_type=device.type, enabled=False):
                for start in range(0, len(texts), _TEXT_BATCH):
                    chunk = texts[start : start + _TEXT_BATCH]
                    batch = chunk + [""] * (_TEXT_BATCH - len(chunk)) if padded else chunk
                    tokens = self.tokenizer(batch).to(device)
                    yield F.normalize(self.text(tokens).float(), dim=-1)[: len(chunk)]
        finally:
            self.text.train(was_training)

    def _fill_text_cache(self, missing: list[str], needed: Sequence[str] = ()) -> None:
        """Encode ``missing`` into the cache; when it would outgrow ``_TEXT_CACHE_MAX`` the cache
        is emptied first, except for the strings of ``needed`` (the current request) it holds."""
        if len(self._text_cache) + len(missing) > _TEXT_CACHE_MAX:
            self._text_cache = {t: self._text_cache[t] for t in dict.fromkeys(needed) if t in self._text_cache}
        start = 0
        for emb in self._text_batches(missing, padded=True):
            for t, e in zip(missing[start : start + emb.shape[0]], emb):
                self._text_cache[t] = e
            start += emb.shape[0]

    def encode_text(self, texts: Sequence[str], *, cache: bool | None = None) -> torch.Tensor:
        """L2-normalised text embeddings (N, D), fp32, no gradient; cached by string unless
        ``cache`` (default: ``levers.text_cache``) is false (then the text tower runs on exactly
        these strings, unpadded: the reference path)."""
        if isinstance(texts, str):
            raise ValueError("encode_text expects a list of strings, got a single string")
        texts = list(texts)
        device = self.device
        if not texts:
            return torch.empty(0, self.embed_dim, device=device)
        if not (self.levers.text_cache if cache is None else cache):
            return torch.cat(list(self._text_batches(texts, padded=False)))
        missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if missing:
            self._fill_text_cache(missing, needed=texts)
        return torch.stack([self._text_cache[t] for t in texts])

    def precompute_text(self, texts: Sequence[str]) -> int:
        """Fill the text cache with ``texts`` (e.g. every caption and prompt of the training set,
        before the first step, so that no step runs the text tower); returns how many strings
        were encoded."""
        missing = [t for t in dict.fromkeys(str(t) for t in texts) if t not in self._text_cache]
        if missing:
            self._fill_text_cache(missing)
            logger.info("text cache: %d embeddings precomputed (%d cached)", len(missing), len(self._text_cache))
        return len(missing)

    def ensemble_text(self, names: Sequence[str]) -> torch.Tensor:
        """Embeddings (N, D) of category ``names`` by the authors' 85-template ensemble
        (``prompt_ensemble``), minus the empty string's when ``cfg.ensemble_subtract_empty``;
        cached by name (the text tower is frozen)."""
        names = [str(n) for n in names]
        if not names:
            return torch.empty(0, self.embed_dim, device=self.device)
        subtract = bool(self.cfg.ensemble_subtract_empty)
        if not self.levers.text_cache:  # the reference path: encoded anew on every call
            return ensemble_embeddings(self.encode_text, names, ensemble_templates(), subtract_empty=subtract)
        missing = list(dict.fromkeys(n for n in names if (n, subtract) not in self._ensemble_cache))
        if missing:
            rows = ensemble_embeddings(self.encode_text, missing, ensemble_templates(), subtract_empty=subtract)
            self._ensemble_cache.update(((n, subtract), row) for n, row in zip(missing, rows))
        return torch.stack([self._ensemble_cache[n, subtract] for n in names])

    def inference_text(self, names: Sequence[str], texts: Sequence[str], explicit_prompts: bool) -> torch.Tensor:
        """The category embeddings scored at inference: the pairs' prompts (``texts``), or the
        ensemble of their ``names`` under ``cfg.inference_prompts: ensemble`` unless the caller
        gave its own prompts."""
        if self.cfg.inference_prompts == "ensemble" and not explicit_prompts:
            return self.ensemble_text(names)
        return self.encode_text(texts)

    # ------------------------------------------------------------------ images
    def prepare_images(self, images: torch.Tensor) -> torch.Tensor:
        """Check pixel images (B, 3, H, W) in [0, 1] and resize them to ``cfg.image_size``."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected pixel images of shape (B, 3, H, W), got {tuple(images.shape)}")
        if not torch.is_floating_point(images):
            images = images.float() / 255.0
        images = images.to(self.device)
        size = int(self.cfg.image_size)
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False,
                                   antialias=True).clamp(0.0, 1.0)
        return images

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """[0, 1] pixels -> CLIP-normalised."""
        return (pixels - self.pixel_mean) / self.pixel_std

    def encode_sketch(self, images: torch.Tensor, *, vv: bool | None = None,
                      return_layers: Sequence[int] = ()) -> EncoderOutput:
        """Encode pixel images; ``vv`` defaults to ``cfg.vv_inference``."""
        x = self.prepare_images(images)
        return self._encode(self.normalise(x), vv=self.cfg.vv_inference if vv is None else vv,
                            return_layers=return_layers)

    def similarity_maps(self, patches: torch.Tensor, text_emb: torch.Tensor, size: int | tuple[int, int],
                        grid: tuple[int, int] | None = None, *, minmax: bool = True) -> torch.Tensor:
        """Eq. 3 maps (B, C, H, W) for patches (B, K, D) and text (B, C, D), min-max normalised
        (optional) then upsampled with ``cfg.upsample_mode``; ``grid`` defaults to a square one."""
        if grid is None:
            side = int(round(patches.shape[1] ** 0.5))
            if side * side != patches.shape[1]:
                raise ValueError(f"{patches.shape[1]} patches are not a square grid; pass grid=(h, w)")
            grid = (side, side)
        maps = patch_similarity(text_emb, patches, grid)
        if minmax:
            maps = minmax_normalise(maps)
        return upsample(maps, size, self.cfg.upsample_mode)

    # ------------------------------------------------------------------ category pairs
    def _pairs(
        self, categories: Sequence[Sequence[str]], prompts: Sequence[Sequence[str]] | None, batch: int
    ) -> tuple[list[int], list[str], list[str], list[int]]:
        """Flatten per-sketch categories: (sketch index, name, prompt) per pair, and counts. Without
        ``prompts`` a category's prompt is ``cfg.prompt_template`` filled with its name."""
        if len(categories) != batch:
            raise ValueError(f"{len(categories)} category lists for {batch} images")
        if prompts is not None and len(prompts) != batch:
            raise ValueError(f"{len(prompts)} prompt lists for {batch} images")
        b_idx: list[int] = []
        names: list[str] = []
        texts: list[str] = []
        counts: list[int] = []
        for b, cats in enumerate(categories):
            if isinstance(cats, str):
                raise ValueError(f"categories[{b}] must be a list of category names, got the string {cats!r}")
            if prompts is not None and len(prompts[b]) != len(cats):
                raise ValueError(f"sketch {b}: {len(cats)} categories but {len(prompts[b])} prompts")
            seen: set[str] = set()
            n = 0
            for c_i, name in enumerate(cats):
                if name in seen:
                    continue
                seen.add(name)
                b_idx.append(b)
                names.append(name)
                texts.append(prompts[b][c_i] if prompts is not None else self.cfg.prompt_template.format(name))
                n += 1
            counts.append(n)
        return b_idx, names, texts, counts

    # ------------------------------------------------------------------ training
    def training_losses(
        self,
        images: torch.Tensor,
        captions: Sequence[str],
        categories: Sequence[Sequence[str]],
        prompts: Sequence[Sequence[str]] | None = None,
        *,
        gather: LossGather | None = None,
    ) -> dict[str, torch.Tensor | int]:
        """Eq. 4 loss of one batch.

        Returns ``{"loss", "loss_global", "loss_category", "threshold" (detached; NaN without a
        learnable threshold), "n_category_pairs" (int)}``. With ``gather`` (data-parallel
        training) this process holds a part of the global batch: negatives are mined among the
        whole batch's captions / prompts and the returned losses are this process's share of the
        global loss times the number of processes (so their mean over processes is the global
        loss, and DDP's gradient average is the global gradient).
        """
        cfg = self.cfg
        batch = images.shape[0]
        if len(captions) != batch:
            raise ValueError(f"{len(captions)} captions for {batch} images")
        x = self.prepare_images(images)
        b_list, names, texts, counts = self._pairs(categories, prompts, batch)
        category_level = cfg.use_category_level and len(b_list) > 0
        device_losses = self.levers.device_losses or gather is not None

        holistic_vv = cfg.holistic_token == "vv"  # CLIP Surgery**: Eq. 1 on the v-v path's token 0
        out = self._encode(self.normalise(x), vv=cfg.vv_train and (category_level or holistic_vv))
        zero = out.vst.float().sum() * 0.0
        if cfg.use_global_loss:
            sketch_emb = out.vv_vst if holistic_vv else out.vst
            if sketch_emb is None:
                raise RuntimeError("holistic_token 'vv' but the encoder returned no v-v token (no v-v blocks?)")
            caption_emb = self.encode_text(list(captions))
            if device_losses:
                loss_global = self._holistic_loss_device(sketch_emb, caption_emb, list(captions), gather)
            else:
                loss_global = holistic_loss(sketch_emb, caption_emb, list(captions), margin=cfg.margin,
                                            distance=cfg.distance)
        else:
            loss_global = zero

        loss_category = zero
        if category_level:
            b_idx = self._index(b_list) if self.levers.device_losses else torch.tensor(
                b_list, dtype=torch.long, device=x.device)
            cct = self.encode_text(texts)  # (P, D)
            sim = patch_similarity(cct.unsqueeze(1), out.patches[b_idx], out.grid)[:, 0]  # (P, h, w)
            maps = upsample(minmax_normalise(sim), x.shape[-2:], cfg.upsample_mode)  # (P, H, W)
            if self.threshold is not None:
                mask = threshold_mask(maps, self.threshold.value, cfg.threshold_temperature)
            else:
                mask = maps  # "w/o thresholding": weight each pixel by its similarity
            ink = 1.0 - x.mean(dim=1)  # (B, H, W)
            category_images = (1.0 - ink[b_idx] * mask).unsqueeze(1).expand(-1, 3, -1, -1)
            layer_vct = self._encode_categories(category_images, cct, counts)
            if device_losses:
                loss_category = self._category_loss_device(layer_vct, cct, names, gather, zero)
            else:
                loss_category = category_loss(layer_vct, cct, names, margin=cfg.margin, distance=cfg.distance)
        elif gather is not None and cfg.use_category_level:
            # no category here, but other processes may have some: take part in their collectives
            loss_category = self._category_loss_device({}, self.encode_text([]), [], gather, zero)

        threshold = (self.threshold.value.detach() if self.threshold is not None
                     else torch.full((), float("nan"), device=x.device))
        return {
            "loss": loss_global + loss_category,
            "loss_global": loss_global,
            "loss_category": loss_category,
            "threshold": threshold,
            "n_category_pairs": len(b_list) if category_level else 0,
        }

    def _encode_categories(self, category_images: torch.Tensor, cct: torch.Tensor,
                           counts: Sequence[int]) -> dict[int, torch.Tensor]:
        """VCTs {layer: (P, D)} of the category images (pixels in [0, 1]), in pair order."""
        kwargs = {
            "vv": False,  # VCTs come from the original path, which never reads the v-v path
            "return_layers": self.cfg.category_loss_layers,
        }
        with_text = self.encoder.cross_attention is not None
        if self.levers.batched_categories:
            out = self._encode(self.normalise(category_images), category_text=cct if with_text else None, **kwargs)
            return out.layer_vst
        # reference: one encoder pass per category slot (1st category of every sketch, 2nd, ...)
        slots = [j for c in counts for j in range(c)]
        parts: dict[int, list[torch.Tensor]] = {}
        order: list[int] = []
        for slot in range(max(slots) + 1):
            members = [p for p, s in enumerate(slots) if s == slot]
            idx = torch.tensor(members, dtype=torch.long, device=category_images.device)
            out = self._encode(self.normalise(category_images[idx]),
                               category_text=cct[idx] if with_text else None, **kwargs)
            for layer, vct in out.layer_vst.items():
                parts.setdefault(layer, []).append(vct)
            order.extend(members)
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
        inverse = inverse.to(category_images.device)
        return {layer: torch.cat(vs)[inverse] for layer, vs in parts.items()}

    def _mean_over_anchors(self, sums: list[torch.Tensor], count: torch.Tensor,
                           gather: LossGather | None) -> torch.Tensor:
        """Mean over layers of (sum over anchors / number of valid anchors), over the global batch."""
        if gather is None:
            denom = count.clamp(min=1).to(sums[0].dtype)
            return torch.stack([s / denom for s in sums]).mean()
        total = gather.all_reduce_sum(count.detach())
        denom = total.clamp(min=1).to(sums[0].dtype)
        return torch.stack([s / denom for s in sums]).mean() * gather.world_size

    def _holistic_loss_device(self, vst: torch.Tensor, caption_emb: torch.Tensor, captions: list[str],
                              gather: LossGather | None) -> torch.Tensor:
        """Eq. 1 as ``losses.holistic_loss`` (identical captions are never negatives), without
        host syncs, over the global batch when ``gather`` is given."""
        ids = self._to_device(string_ids(captions))
        cand, cand_ids = caption_emb, ids
        excluded_extra = None
        if gather is not None:
            cand, cand_ids, ok = gather.gather_rows(caption_emb, ids, gather.max_captions)
            excluded_extra = ~ok.reshape(1, -1)
        excluded = ids.reshape(-1, 1) == cand_ids.reshape(1, -1)
        if excluded_extra is not None:
            excluded = excluded | excluded_extra
        s, n = triplet_sum_count(vst, caption_emb, cand, excluded, self.cfg.margin, self.cfg.distance)
        return self._mean_over_anchors([s], n, gather)

    def _category_loss_device(self, layer_vct: dict[int, torch.Tensor], cct: torch.Tensor, names: list[str],
                              gather: LossGather | None, zero: torch.Tensor) -> torch.Tensor:
        """The category loss as ``losses.category_loss`` (negatives: prompts of other category
        names), without host syncs, over the global batch when ``gather`` is given."""
        ids = self._to_device(string_ids(names))
        cand, cand_ids = cct, ids
        excluded_extra = None
        if gather is not None:
            if len(names) > gather.max_pairs:
                raise ValueError(
                    f"{len(names)} category pairs in one process's batch, more than the {gather.max_pairs} "
                    "it was set up for (local batch x training.max_categories_per_sketch)"
                )
            cand, cand_ids, ok = gather.gather_rows(cct, ids, gather.max_pairs)
            excluded_extra = ~ok.reshape(1, -1)
        excluded = ids.reshape(-1, 1) == cand_ids.reshape(1, -1)
        if excluded_extra is not None:
            excluded = excluded | excluded_extra
        sums: list[torch.Tensor] = []
        count: torch.Tensor | None = None
        for _, vct in sorted(layer_vct.items()):
            s, n = triplet_sum_count(vct, cct, cand, excluded, self.cfg.margin, self.cfg.distance)
            sums.append(s)
            count = n if count is None else count  # the same for every layer
        if count is None:  # no local category pair (data-parallel only)
            sums, count = [zero], torch.zeros((), dtype=torch.long, device=zero.device)
        return self._mean_over_anchors(sums, count, gather)

    def forward(self, images: torch.Tensor, captions: Sequence[str], categories: Sequence[Sequence[str]],
                prompts: Sequence[Sequence[str]] | None = None, *,
                gather: LossGather | None = None) -> dict[str, torch.Tensor | int]:
        """Alias of ``training_losses`` (so DDP wrappers work)."""
        return self.training_losses(images, captions, categories, prompts, gather=gather)

    # ------------------------------------------------------------------ inference
    def _segment(self, images: torch.Tensor, categories: Sequence[Sequence[str]], size: int | tuple[int, int] | None,
                 prompts: Sequence[Sequence[str]] | None, minmax: bool) -> list[torch.Tensor]:
        batch = images.shape[0]
        b_list, names, texts, counts = self._pairs(categories, prompts, batch)
        out = self.encode_sketch(images, vv=self.cfg.vv_inference)
        if not b_list:
            hw = out.grid if size is None else (int(size), int(size)) if isinstance(size, int) else tuple(size)
            return [torch.empty(0, *hw, device=self.device) for _ in range(batch)]
        b_idx = self._index(b_list)
        cct = self.inference_text(names, texts, explicit_prompts=prompts is not None)
        sim = patch_similarity(cct.unsqueeze(1), out.patches[b_idx], out.grid)[:, 0]
        if minmax:
            sim = minmax_normalise(sim)
        maps = sim if size is None else upsample(sim, size, self.cfg.upsample_mode)
        return list(torch.split(maps, counts, dim=0))

    @torch.no_grad()
    def segment(self, images: torch.Tensor, categories: Sequence[Sequence[str]], size: int | tuple[int, int] | None,
                prompts: Sequence[Sequence[str]] | None = None) -> list[torch.Tensor]:
        """Per-sketch similarity maps ``(C_b, H, W)`` (§3.4): raw cosine similarities (v-v path
        per ``cfg.vv_inference``) upsampled to ``size`` (``None``: the patch grid, not upsampled;
        ``similarity.upsample`` with ``cfg.upsample_mode`` does it later, one map at a time); min-max
        normalised per map when ``cfg.inference_normalization == "minmax"``. Labels = argmax over C. Duplicate category
        names of a sketch are kept once. A category's text is ``prompts`` when given, else
        ``cfg.prompt_template`` filled with its name, or its 85-template ensemble under
        ``cfg.inference_prompts: ensemble``. Call ``model.eval()`` first."""
        return self._segment(images, categories, size, prompts,
                             minmax=self.cfg.inference_normalization == "minmax")

    @torch.no_grad()
    def segment_normalised(self, images: torch.Tensor, categories: Sequence[Sequence[str]],
                           size: int | tuple[int, int] | None,
                           prompts: Sequence[Sequence[str]] | None = None) -> list[torch.Tensor]:
        """Like ``segment`` but always min-max normalised per map (for ``similarity.isolate``)."""
        return self._segment(images, categories, size, prompts, minmax=True)


def build_model(cfg: ModelConfig) -> SketchSegModel:
    """Load the CLIP backbone named by ``cfg`` and wrap it (validates block indices)."""
    clip_model, tokenizer, mean_std = load_clip(cfg)
    return SketchSegModel(clip_model, tokenizer, cfg, mean_std)
