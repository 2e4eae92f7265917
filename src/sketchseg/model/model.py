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
spread over several processes with the data-parallel losses of ``losses.py`` (see ``LossGather``
there). The text embeddings come from a ``TextCache`` (``text_cache.py``); the implementation
switches are ``Levers`` (``levers.py``), the backbone fingerprints in ``fingerprint.py``.
"""

from __future__ import annotations

import logging
from dataclasses import fields, replace
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sketchseg.model import finetune
from sketchseg.model.authors_layers import authors_maps
from sketchseg.model.clip_loader import MeanStd, load_clip
from sketchseg.model.config import ModelConfig
from sketchseg.model.encoder import EncoderOutput, SketchEncoder
from sketchseg.model.errors import ModelConfigError
from sketchseg.model.fingerprint import architecture_fingerprint, weights_fingerprint
from sketchseg.model.levers import Levers
from sketchseg.model.losses import (
    LossGather,
    category_loss,
    category_loss_device,
    holistic_loss,
    holistic_loss_device,
    string_ids,
)
from sketchseg.model.pairs import category_pairs
from sketchseg.model.prompt_ensemble import ensemble_embeddings, ensemble_templates
from sketchseg.model.similarity import (
    LearnableThreshold,
    minmax_normalise,
    patch_similarity,
    threshold_mask,
    upsample,
)
from sketchseg.model.text_cache import TextCache
from sketchseg.model.text_tower import TextTower

logger = logging.getLogger(__name__)


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
            raise ModelConfigError(f"{cfg.clip_model}: only open_clip CLIP models with a ViT visual tower are supported")
        n_layers = len(visual.transformer.resblocks)
        cfg.validate(n_layers)
        patch = int(visual.conv1.kernel_size[0])
        if cfg.image_size % patch != 0:
            raise ModelConfigError(
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
            authors_cross_attention=cfg.test_time_cross_attention == "authors",
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
        self.text_cache = TextCache(self.text, tokenizer, embed_dim)
        finetune.set_trainable(self)
        counts = self.parameter_counts()
        logger.info(
            "SketchSegModel(%s, finetune=%s): %d trainable of %d parameters (%.2f%%)",
            cfg.clip_model, cfg.finetune, counts["trainable"], counts["total"],
            100.0 * counts["trainable"] / max(counts["total"], 1),
        )

    # ------------------------------------------------------------------ parameters
    def added_modules(self) -> list[nn.Module]:
        """Modules that are not part of CLIP (always saved in checkpoints): cross-attention, threshold."""
        return finetune.added_modules(self)

    def checkpoint_parameter_names(self) -> list[str]:
        """Names saved by ``trainable_state_dict``: trainable parameters plus every non-CLIP one."""
        return finetune.checkpoint_parameter_names(self)

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
        out = super()._apply(fn, recurse)
        self.text_cache.follow_tower()  # cached embeddings live on the tower's device / dtype
        return out

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
    def encode_text(self, texts: Sequence[str], *, cache: bool | None = None) -> torch.Tensor:
        """L2-normalised text embeddings (N, D), fp32, no gradient; cached by string unless
        ``cache`` (default: ``levers.text_cache``) is false (then the text tower runs on exactly
        these strings, unpadded: the reference path)."""
        return self.text_cache.encode(texts, self.device, cache=self.levers.text_cache if cache is None else cache)

    def precompute_text(self, texts: Sequence[str]) -> int:
        """Fill the text cache with ``texts`` (e.g. every caption and prompt of the training set,
        before the first step, so that no step runs the text tower); returns how many strings
        were encoded."""
        return self.text_cache.precompute(texts, self.device)

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
        return self.text_cache.ensemble(names, self.encode_text, subtract_empty=subtract)

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
                      return_layers: Sequence[int] = (), return_tokens: bool = False) -> EncoderOutput:
        """Encode pixel images; ``vv`` defaults to ``cfg.vv_inference``."""
        x = self.prepare_images(images)
        return self._encode(self.normalise(x), vv=self.cfg.vv_inference if vv is None else vv,
                            return_layers=return_layers, return_tokens=return_tokens)

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
        b_list, names, texts, counts = category_pairs(categories, prompts, batch, cfg.prompt_template)
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
                loss_global = holistic_loss_device(sketch_emb, caption_emb, self._to_device(string_ids(list(captions))),
                                                   margin=cfg.margin, distance=cfg.distance, gather=gather)
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
                loss_category = category_loss_device(layer_vct, cct, self._to_device(string_ids(names)), zero,
                                                     margin=cfg.margin, distance=cfg.distance, gather=gather)
            else:
                loss_category = category_loss(layer_vct, cct, names, margin=cfg.margin, distance=cfg.distance)
        elif gather is not None and cfg.use_category_level:
            # no category here, but other processes may have some: take part in their collectives
            loss_category = category_loss_device({}, self.encode_text([]), self._to_device(string_ids([])), zero,
                                                 margin=cfg.margin, distance=cfg.distance, gather=gather)

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

    def forward(self, images: torch.Tensor, captions: Sequence[str], categories: Sequence[Sequence[str]],
                prompts: Sequence[Sequence[str]] | None = None, *,
                gather: LossGather | None = None) -> dict[str, torch.Tensor | int]:
        """Alias of ``training_losses`` (so DDP wrappers work)."""
        return self.training_losses(images, captions, categories, prompts, gather=gather)

    # ------------------------------------------------------------------ inference
    def _segment(self, images: torch.Tensor, categories: Sequence[Sequence[str]], size: int | tuple[int, int] | None,
                 prompts: Sequence[Sequence[str]] | None, minmax: bool) -> list[torch.Tensor]:
        batch = images.shape[0]
        b_list, names, texts, counts = category_pairs(categories, prompts, batch, self.cfg.prompt_template)
        authors = self.cfg.test_time_cross_attention == "authors" or self.cfg.feature_normalization != "feature"
        out = self.encode_sketch(images, vv=self.cfg.vv_inference, return_tokens=authors)
        if not b_list:
            hw = out.grid if size is None else (int(size), int(size)) if isinstance(size, int) else tuple(size)
            return [torch.empty(0, *hw, device=self.device) for _ in range(batch)]
        b_idx = self._index(b_list)
        cct = self.inference_text(names, texts, explicit_prompts=prompts is not None)
        if authors:  # the released authors' checkpoint (model/authors_layers.py)
            sim = authors_maps(self.encoder, out, b_idx, cct, counts, self.cfg.feature_normalization)
        else:
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


def build_model(cfg: ModelConfig, *, weights_in_checkpoint: bool = False) -> SketchSegModel:
    """Load the CLIP backbone named by ``cfg`` and wrap it (validates block indices); with
    ``weights_in_checkpoint`` its weights are seeded random ones a checkpoint will overwrite."""
    clip_model, tokenizer, mean_std = load_clip(cfg, weights_in_checkpoint=weights_in_checkpoint)
    return SketchSegModel(clip_model, tokenizer, cfg, mean_std)
