"""The two-level sketch segmentation model (paper §3, Fig. 2).

Level I (holistic): the sketch is encoded with the two-path encoder; its VST (original path) is
pulled to its caption embedding with a hardest-negative triplet loss (Eq. 1).

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
"""

from __future__ import annotations

import hashlib
import logging
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sketchseg.errors import SketchSegConfigError
from sketchseg.model.clip_loader import MeanStd, load_clip
from sketchseg.model.config import ModelConfig
from sketchseg.model.encoder import EncoderOutput, SketchEncoder
from sketchseg.model.losses import category_loss, holistic_loss
from sketchseg.model.similarity import (
    LearnableThreshold,
    minmax_normalise,
    patch_similarity,
    threshold_mask,
    upsample,
)
from sketchseg.model.text_tower import TextTower

logger = logging.getLogger(__name__)

DEFAULT_PROMPT_TEMPLATE = "A sketch of {}."
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
        self.encoder = SketchEncoder(
            visual,
            num_prompts=cfg.num_visual_prompts,
            prompt_init_range=cfg.visual_prompt_init_range,
            prompt_dropout=cfg.prompt_dropout,
            vv_blocks=cfg.vv_blocks,
            cross_attention_layers=cfg.cross_attention_layers if use_ca else (),
            embed_dim=embed_dim,
            cross_attention_dropout=cfg.cross_attention_dropout,
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
        if strategy in ("ln", "ln_prompts"):
            for module in visual.modules():
                if isinstance(module, nn.LayerNorm):
                    for p in module.parameters():
                        p.requires_grad_(True)
        if strategy == "full":
            for p in visual.parameters():
                p.requires_grad_(True)
        if strategy in ("prompts", "ln_prompts", "full") and self.encoder.prompts is not None:
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
        return super()._apply(fn, recurse)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    # ------------------------------------------------------------------ text
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised text embeddings (N, D), fp32, no gradient, cached by string."""
        if isinstance(texts, str):
            raise ValueError("encode_text expects a list of strings, got a single string")
        texts = list(texts)
        device = self.device
        missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if missing:
            if len(self._text_cache) + len(missing) > _TEXT_CACHE_MAX:
                self._text_cache = {}
            was_training = self.text.training
            self.text.eval()
            with torch.no_grad(), torch.autocast(device_type=device.type, enabled=False):
                for start in range(0, len(missing), _TEXT_BATCH):
                    chunk = missing[start : start + _TEXT_BATCH]
                    # Always a full, fixed-shape batch (padded with empty strings): a text's
                    # embedding is then bit-identical whatever it is encoded with, so a resumed
                    # run (empty cache) reproduces an uninterrupted one exactly.
                    padded = chunk + [""] * (_TEXT_BATCH - len(chunk))
                    tokens = self.tokenizer(padded).to(device)
                    emb = F.normalize(self.text(tokens).float(), dim=-1)[: len(chunk)]
                    for t, e in zip(chunk, emb):
                        self._text_cache[t] = e
            self.text.train(was_training)
        if not texts:
            return torch.empty(0, self.embed_dim, device=device)
        return torch.stack([self._text_cache[t] for t in texts])

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
        return self.encoder(self.normalise(x), vv=self.cfg.vv_inference if vv is None else vv,
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
    @staticmethod
    def _pairs(
        categories: Sequence[Sequence[str]], prompts: Sequence[Sequence[str]] | None, batch: int
    ) -> tuple[list[int], list[str], list[str], list[int]]:
        """Flatten per-sketch categories: (sketch index, name, prompt) per pair, and counts."""
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
                texts.append(prompts[b][c_i] if prompts is not None else DEFAULT_PROMPT_TEMPLATE.format(name))
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
    ) -> dict[str, torch.Tensor | int]:
        """Eq. 4 loss of one batch.

        Returns ``{"loss", "loss_global", "loss_category", "threshold" (detached; NaN without a
        learnable threshold), "n_category_pairs" (int)}``.
        """
        cfg = self.cfg
        batch = images.shape[0]
        if len(captions) != batch:
            raise ValueError(f"{len(captions)} captions for {batch} images")
        x = self.prepare_images(images)
        b_list, names, texts, _ = self._pairs(categories, prompts, batch)
        category_level = cfg.use_category_level and len(b_list) > 0

        out = self.encoder(self.normalise(x), vv=cfg.vv_train and category_level)
        zero = out.vst.float().sum() * 0.0
        if cfg.use_global_loss:
            caption_emb = self.encode_text(list(captions))
            loss_global = holistic_loss(out.vst, caption_emb, list(captions), margin=cfg.margin,
                                        distance=cfg.distance)
        else:
            loss_global = zero

        loss_category = zero
        if category_level:
            b_idx = torch.tensor(b_list, dtype=torch.long, device=x.device)
            cct = self.encode_text(texts)  # (P, D)
            sim = patch_similarity(cct.unsqueeze(1), out.patches[b_idx], out.grid)[:, 0]  # (P, h, w)
            maps = upsample(minmax_normalise(sim), x.shape[-2:], cfg.upsample_mode)  # (P, H, W)
            if self.threshold is not None:
                mask = threshold_mask(maps, self.threshold.value, cfg.threshold_temperature)
            else:
                mask = maps  # "w/o thresholding": weight each pixel by its similarity
            ink = 1.0 - x.mean(dim=1)  # (B, H, W)
            category_images = (1.0 - ink[b_idx] * mask).unsqueeze(1).expand(-1, 3, -1, -1)
            cat_out = self.encoder(
                self.normalise(category_images),
                vv=False,  # VCTs come from the original path, which never reads the v-v path
                category_text=cct if self.encoder.cross_attention is not None else None,
                return_layers=cfg.category_loss_layers,
            )
            loss_category = category_loss(cat_out.layer_vst, cct, names, margin=cfg.margin,
                                          distance=cfg.distance)

        threshold = (self.threshold.value.detach() if self.threshold is not None
                     else torch.full((), float("nan"), device=x.device))
        return {
            "loss": loss_global + loss_category,
            "loss_global": loss_global,
            "loss_category": loss_category,
            "threshold": threshold,
            "n_category_pairs": len(b_list) if category_level else 0,
        }

    def forward(self, images: torch.Tensor, captions: Sequence[str], categories: Sequence[Sequence[str]],
                prompts: Sequence[Sequence[str]] | None = None) -> dict[str, torch.Tensor | int]:
        """Alias of ``training_losses`` (so DDP wrappers work)."""
        return self.training_losses(images, captions, categories, prompts)

    # ------------------------------------------------------------------ inference
    def _segment(self, images: torch.Tensor, categories: Sequence[Sequence[str]], size: int | tuple[int, int],
                 prompts: Sequence[Sequence[str]] | None, minmax: bool) -> list[torch.Tensor]:
        batch = images.shape[0]
        b_list, _, texts, counts = self._pairs(categories, prompts, batch)
        size_hw = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        out = self.encode_sketch(images, vv=self.cfg.vv_inference)
        if not b_list:
            return [torch.empty(0, *size_hw, device=self.device) for _ in range(batch)]
        b_idx = torch.tensor(b_list, dtype=torch.long, device=self.device)
        cct = self.encode_text(texts)
        sim = patch_similarity(cct.unsqueeze(1), out.patches[b_idx], out.grid)[:, 0]
        if minmax:
            sim = minmax_normalise(sim)
        maps = upsample(sim, size_hw, self.cfg.upsample_mode)
        return list(torch.split(maps, counts, dim=0))

    @torch.no_grad()
    def segment(self, images: torch.Tensor, categories: Sequence[Sequence[str]], size: int | tuple[int, int],
                prompts: Sequence[Sequence[str]] | None = None) -> list[torch.Tensor]:
        """Per-sketch similarity maps ``(C_b, H, W)`` (§3.4): raw cosine similarities (v-v path
        per ``cfg.vv_inference``) upsampled to ``size``; min-max normalised per map when
        ``cfg.inference_normalization == "minmax"``. Labels = argmax over C. Duplicate category
        names of a sketch are kept once. Call ``model.eval()`` first."""
        return self._segment(images, categories, size, prompts,
                             minmax=self.cfg.inference_normalization == "minmax")

    @torch.no_grad()
    def segment_normalised(self, images: torch.Tensor, categories: Sequence[Sequence[str]],
                           size: int | tuple[int, int],
                           prompts: Sequence[Sequence[str]] | None = None) -> list[torch.Tensor]:
        """Like ``segment`` but always min-max normalised per map (for ``similarity.isolate``)."""
        return self._segment(images, categories, size, prompts, minmax=True)


def build_model(cfg: ModelConfig) -> SketchSegModel:
    """Load the CLIP backbone named by ``cfg`` and wrap it (validates block indices)."""
    clip_model, tokenizer, mean_std = load_clip(cfg)
    return SketchSegModel(clip_model, tokenizer, cfg, mean_std)
