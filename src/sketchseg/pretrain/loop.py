"""CLIP-style contrastive pre-training of the tiny CLIP on generated sketches (sample env only).

Why: the paper fine-tunes a CLIP that was *pre-trained* on image-text pairs; its method (frozen
text tower, LayerNorm + visual prompts) relies on that image-text alignment. The sample's
``sketchseg-tiny`` architecture has no published weights, and from random weights the frozen text
tower gives near-identical prompt embeddings, so nothing can be learned. This module gives the
tiny CLIP a small CLIP-like starting point: both towers trained with the symmetric InfoNCE loss
(learnable logit scale, AdamW) on generated pairs, image-level only (no patch or mask labels,
as CLIP never sees any).

Pairs (``make_pair``) come from :mod:`sketchseg.data.sample`'s drawing routines:

* single objects: 1..``MAX_COUNTS[c]`` instances of one category drawn where scenes draw them,
  paired with a text drawn per visit ("A sketch of tree.", "a tree", "two trees", a one-object
  caption from ``make_caption`` ...); all single objects of a category are positives of each other;
* scenes: ``make_scene`` with its caption.

Seed space: pair ``i`` of stream ``s`` is drawn with ``np.random.default_rng([SEED_TAG, seed, s, i])``;
the sample's sketches use ``[seed, participant, k]`` keys, so pre-training never sees a sample
(train, val or test) sketch. Images are rendered like the sample's rasters (256 px, 3-px ink) and
resized with Lanczos to the architecture's input size, as ``load_sketch_image`` does.

Weights are returned as an open_clip state dict (``clip_model.state_dict()``) that
``clip_loader.load_clip`` reads back from a ``.safetensors`` file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from sketchseg.data.sample import CATEGORIES, MAX_COUNTS, PLURALS, draw_object, make_caption, make_scene
from sketchseg.data.strokes import render_strokes
from sketchseg.errors import SketchSegConfigError
from sketchseg.model.config import DEFAULT_PROMPT_TEMPLATE

logger = logging.getLogger(__name__)

__all__ = [
    "PretrainConfig",
    "PretrainPool",
    "PretrainResult",
    "SEED_TAG",
    "WEIGHTS_FORMAT",
    "build_pool",
    "contrastive_loss",
    "contrastive_loss_from_logits",
    "soft_max_pool",
    "mil_loss",
    "ink_patch_loss",
    "patch_ink",
    "create_tiny_clip",
    "evaluate_alignment",
    "make_pair",
    "pretrain_clip",
    "read_cached_weights",
    "save_weights",
    "weights_metadata",
    "single_object_text",
]

SEED_TAG = 0x7C11_9E7A  # first word of every pre-training seed key (the sample's keys start with its seed)
STREAM_TRAIN, STREAM_EVAL, STREAM_TEXT = 0, 1, 2
WEIGHTS_FORMAT = "open_clip-state-dict"
PRETRAIN_VERSION = "1"  # bump when the data or the loop change in a way the config does not show
EVAL_PROMPT = DEFAULT_PROMPT_TEMPLATE  # the prompt the sketch model uses for a category
_NUMBER_WORDS = {2: "two", 3: "three", 4: "four"}


@dataclass
class PretrainConfig:
    """Every knob of the pre-training (``pretrain:`` parameters, minus the Kedro-side keys)."""

    clip_model: str = "sketchseg-tiny"
    seed: int = 0
    steps: int = 400
    batch_size: int = 128
    pool_size: int = 6000           # generated training pairs, visited in shuffled passes
    single_fraction: float = 0.5    # share of single-object pairs in the pool (the rest: scenes)
    max_zoom: float = 1.0           # single objects scaled by a log-uniform factor in [1, max_zoom] (fits the canvas)
    learning_rate: float = 2.0e-3
    weight_decay: float = 0.1       # not on biases, LayerNorms, embeddings' 1-d params, logit scale
    warmup_steps: int = 40          # linear warm-up, then cosine decay to 0
    logit_scale_init: float = 1.0 / 0.07   # CLIP's initial temperature
    logit_scale_max: float = 100.0         # CLIP's clamp
    ink_loss_weight: float = 1.0    # patch->text InfoNCE on the inked patches of single objects (0 = off)
    mil_loss_weight: float = 1.0    # multiple-instance loss: which categories a sketch holds, from its patches (0 = off)
    mil_temperature: float = 0.1    # soft maximum over patches of the patch-prompt cosine
    min_patch_ink: float = 0.02     # patches with less mean ink are not scored by the ink loss
    # patch tokens the ink / MIL losses train: those of the v-v path through these 1-based blocks
    # (the sketch model's model.vv_blocks, what its similarity maps read), or [] = the plain
    # transformer's output tokens
    vv_blocks: list[int] = field(default_factory=lambda: [4, 5, 6])
    render_size: int = 256          # sketches rendered like the sample's raster files
    thickness: int = 3
    eval_per_category: int = 10     # held-out single objects per category (zero-shot accuracy)
    eval_scenes: int = 100          # held-out scenes (caption retrieval R@1)
    device: str = "cpu"
    num_threads: int | None = None  # torch CPU threads (None = torch's default)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> PretrainConfig:
        d = dict(d or {})
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise SketchSegConfigError(f"unknown pretrain parameter(s) {unknown}; valid keys are: {', '.join(names)}")
        cfg = cls(**d)
        cfg.check()
        return cfg

    def check(self) -> None:
        ints = {"seed": 0, "steps": 0, "batch_size": 2, "pool_size": 1, "warmup_steps": 0, "render_size": 8,
                "thickness": 1, "eval_per_category": 0, "eval_scenes": 0}
        for name, low in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SketchSegConfigError(f"pretrain.{name} must be an integer >= {low}, got {value!r}")
        for name in ("learning_rate", "weight_decay", "logit_scale_init", "logit_scale_max", "single_fraction",
                     "ink_loss_weight", "mil_loss_weight", "mil_temperature", "min_patch_ink"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise SketchSegConfigError(f"pretrain.{name} must be a number >= 0, got {value!r}")
        if not self.mil_temperature > 0:
            raise SketchSegConfigError(f"pretrain.mil_temperature must be > 0, got {self.mil_temperature!r}")
        if isinstance(self.max_zoom, bool) or not isinstance(self.max_zoom, (int, float)) or self.max_zoom < 1.0:
            raise SketchSegConfigError(f"pretrain.max_zoom must be a number >= 1, got {self.max_zoom!r}")
        if not 0.0 <= self.single_fraction <= 1.0:
            raise SketchSegConfigError(f"pretrain.single_fraction must be in [0, 1], got {self.single_fraction!r}")
        if not 0.0 < self.logit_scale_init <= self.logit_scale_max:
            raise SketchSegConfigError(
                f"pretrain.logit_scale_init ({self.logit_scale_init}) must be in (0, logit_scale_max "
                f"({self.logit_scale_max})]"
            )
        if self.num_threads is not None and (isinstance(self.num_threads, bool) or int(self.num_threads) < 1):
            raise SketchSegConfigError(f"pretrain.num_threads must be null or >= 1, got {self.num_threads!r}")
        if not isinstance(self.clip_model, str) or not self.clip_model:
            raise SketchSegConfigError(f"pretrain.clip_model must be an open_clip model name, got {self.clip_model!r}")

    def __post_init__(self) -> None:
        if self.vv_blocks is None:
            self.vv_blocks = []
        if isinstance(self.vv_blocks, (str, bytes)) or not hasattr(self.vv_blocks, "__iter__"):
            raise SketchSegConfigError(f"pretrain.vv_blocks must be a list of block indices, got {self.vv_blocks!r}")
        self.vv_blocks = [int(v) for v in self.vv_blocks]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """sha256 of everything that changes the weights (not ``device``/``num_threads``)."""
        d = {k: v for k, v in self.to_dict().items() if k not in ("device", "num_threads")}
        d["version"] = PRETRAIN_VERSION
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------
@dataclass
class Pair:
    """One generated sketch: grey image (S, S) uint8 (255 = paper), its kind and text information."""

    image: np.ndarray
    kind: str                # "single" | "scene"
    category: str | None     # single objects
    count: int               # single objects: number of instances
    caption: str | None      # scenes: the generator's caption
    objects: tuple[str, ...] = ()  # the categories drawn (image-level tags; a single object: its category)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def single_object_text(rng: np.random.Generator, category: str, count: int) -> str:
    """A text for ``count`` instances of ``category``: a prompt-like template or a short caption."""
    plural = PLURALS[category]
    k = int(rng.integers(0, 6))
    if count == 1:
        options = [EVAL_PROMPT.format(category), f"A sketch of {_article(category)} {category}.",
                   f"{_article(category)} {category}", category, f"a drawing of {_article(category)} {category}"]
    else:
        many = _NUMBER_WORDS.get(count, "many")
        options = [EVAL_PROMPT.format(plural), f"{many} {plural}", plural, f"A sketch of {many} {plural}.",
                   f"a drawing of some {plural}"]
    if k == 5:
        return make_caption(rng, [(category, count)])
    return options[k]


def _render(strokes: Sequence[np.ndarray], image_size: int, render_size: int, thickness: int) -> np.ndarray:
    ink, _ = render_strokes(strokes, render_size, canvas=256.0, thickness=thickness)
    if render_size == image_size:
        return ink
    grey = Image.fromarray(ink.astype(np.float32) / 255.0).resize((image_size, image_size), Image.Resampling.LANCZOS)
    return np.clip(np.rint(np.asarray(grey, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def _zoom(rng: np.random.Generator, strokes: list[np.ndarray], max_zoom: float) -> list[np.ndarray]:
    """Scale the strokes by a log-uniform factor in [1, max_zoom] (capped so that they fit the 256
    canvas) about their box centre, then move them to a random place where they fit."""
    z = float(np.exp(rng.uniform(0.0, np.log(max_zoom)))) if max_zoom > 1.0 else 1.0
    pts = np.concatenate(strokes)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    size = np.maximum(hi - lo, 1.0)
    margin = 6.0  # px of the 256 frame kept free at the border
    z = max(min(z, float((256.0 - 2 * margin) / size.max())), 1.0)
    if z <= 1.0:  # natural size: keep where make_scene would draw it
        return strokes
    half = z * size / 2.0 + margin
    centre = np.array([rng.uniform(half[0], 256.0 - half[0]) if half[0] < 128.0 else 128.0,
                       rng.uniform(half[1], 256.0 - half[1]) if half[1] < 128.0 else 128.0])
    old = (lo + hi) / 2.0
    return [np.clip((s - old) * z + centre, 0.0, 256.0 - 1e-3).astype(np.float32) for s in strokes]


def make_pair(cfg: PretrainConfig, stream: int, index: int, *, image_size: int, kind: str | None = None,
              category: str | None = None) -> Pair:
    """Pair ``index`` of ``stream`` under ``cfg`` (seed, single_fraction, max_zoom, render_size,
    thickness): deterministic in (cfg.seed, stream, index), disjoint from the sample's seed keys.

    ``kind`` (and for single objects ``category``) can be forced; otherwise they are drawn.
    """
    rng = np.random.default_rng([SEED_TAG, int(cfg.seed), int(stream), int(index)])
    draw_kind = "single" if rng.random() < cfg.single_fraction else "scene"
    kind = kind or draw_kind
    if kind == "scene":
        scene = make_scene(rng)
        return Pair(_render(scene.strokes, image_size, cfg.render_size, cfg.thickness), "scene", None, 1, scene.caption,
                    tuple(sorted(set(scene.labels))))
    if kind != "single":
        raise ValueError(f"kind must be 'single' or 'scene', got {kind!r}")
    cat = category if category is not None else CATEGORIES[int(rng.integers(len(CATEGORIES)))]
    max_n = MAX_COUNTS[cat]
    count = 1 if max_n == 1 or rng.random() < 0.6 else int(rng.integers(2, max_n + 1))
    strokes = [s for inst in draw_object(rng, cat, count) for s in inst]
    strokes = _zoom(rng, strokes, float(cfg.max_zoom))
    return Pair(_render(strokes, image_size, cfg.render_size, cfg.thickness), "single", cat, count, None, (cat,))


@dataclass
class PretrainPool:
    """Generated pairs held in memory: images (N, S, S) uint8 and per-pair text information."""

    images: torch.Tensor
    kinds: list[str]
    categories: list[str | None]
    counts: list[int]
    captions: list[str | None]
    objects: list[tuple[str, ...]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])


def build_pool(cfg: PretrainConfig, stream: int, n: int, *, image_size: int, progress: bool = True,
               desc: str = "pre-training pairs") -> PretrainPool:
    """Generate pairs ``0..n-1`` of ``stream``."""
    pairs = [make_pair(cfg, stream, i, image_size=image_size)
             for i in tqdm(range(int(n)), desc=desc, unit="pair", disable=None if progress else True)]
    return _to_pool(pairs, image_size)


def _to_pool(pairs: Sequence[Pair], image_size: int) -> PretrainPool:
    images = (torch.from_numpy(np.stack([p.image for p in pairs])) if pairs
              else torch.empty(0, image_size, image_size, dtype=torch.uint8))
    return PretrainPool(images, [p.kind for p in pairs], [p.category for p in pairs], [p.count for p in pairs],
                        [p.caption for p in pairs], [p.objects for p in pairs])


def to_model_input(grey_u8: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(B, S, S) uint8 grey (255 = paper) -> (B, 3, S, S) CLIP-normalised, as SketchSegModel feeds CLIP."""
    x = (grey_u8.float() / 255.0).unsqueeze(1).expand(-1, 3, -1, -1)
    m = torch.tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1)
    return (x - m) / s


# --------------------------------------------------------------------------------------------------
# loss
# --------------------------------------------------------------------------------------------------
def _pair_targets(b: int, groups: Sequence[int] | torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """(B, B) target distribution over the B texts for each of the B images: the identity, or with
    ``groups`` uniform over the texts of the image's group (on ``like``'s device and dtype)."""
    if groups is None:
        return torch.eye(b, device=like.device, dtype=like.dtype)
    g = torch.as_tensor(groups, device=like.device)
    if g.shape != (b,):
        raise ValueError(f"groups must have one entry per pair ({b}), got shape {tuple(g.shape)}")
    pos = (g[:, None] == g[None, :]).to(like.dtype)
    return pos / pos.sum(dim=1, keepdim=True)


def contrastive_loss_from_logits(logits: torch.Tensor, groups: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE on a (B, B) image-by-text logit matrix (see :func:`contrastive_loss`)."""
    if logits.ndim != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(f"logits must be a square (B, B) matrix, got {tuple(logits.shape)}")
    targets = _pair_targets(logits.shape[0], groups, logits)
    loss_i = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    loss_t = -(targets.t() * F.log_softmax(logits.t(), dim=1)).sum(dim=1).mean()
    return 0.5 * (loss_i + loss_t)


def contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float,
                     groups: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP) over a batch of L2-normalised embeddings (B, D).

    ``logits = logit_scale * image_emb @ text_emb.T``; the loss is the mean of the image->text and
    text->image cross-entropies. With ``groups``, every pair of the same group counts as a positive
    (target probability spread evenly over them), so two sketches of trees are not pushed apart;
    without, the positives are the diagonal (standard CLIP).
    """
    if image_emb.shape != text_emb.shape or image_emb.ndim != 2:
        raise ValueError(f"image and text embeddings must both be (B, D), got {tuple(image_emb.shape)} "
                         f"and {tuple(text_emb.shape)}")
    return contrastive_loss_from_logits(logit_scale * image_emb @ text_emb.t(), groups)


def soft_max_pool(patch_emb: torch.Tensor, text_emb: torch.Tensor, temperature: float) -> torch.Tensor:
    """For every image b and text t, a soft maximum over the patches k of cos(patch_bk, text_t):
    ``temperature * log(mean_k exp(cos_bkt / temperature))`` (the maximum as temperature -> 0, the
    mean as it grows). L2-normalised patches (B, K, D) and texts (T, D) -> (B, T)."""
    if patch_emb.ndim != 3 or text_emb.ndim != 2 or patch_emb.shape[-1] != text_emb.shape[-1]:
        raise ValueError(f"expected patches (B, K, D) and texts (T, D), got {tuple(patch_emb.shape)} "
                         f"and {tuple(text_emb.shape)}")
    cos = torch.einsum("bkd,td->btk", patch_emb, text_emb)
    return temperature * (torch.logsumexp(cos / temperature, dim=-1) - math.log(patch_emb.shape[1]))


def mil_loss(patch_emb: torch.Tensor, prompt_emb: torch.Tensor, logit_scale: torch.Tensor | float,
             present: torch.Tensor, temperature: float) -> torch.Tensor:
    """Multiple-instance loss from image-level tags: sketch b holds the categories ``present[b]``
    (B, C) bool of the C category prompts (C, D). Each category's score is the soft maximum over
    the patches of the patch-prompt cosine; the softmax over categories of ``logit_scale * score``
    is pulled to the uniform distribution over the present ones (cross-entropy). So every present
    category needs a patch that matches it and no patch may match an absent one: patch tokens
    become category-specific without any patch label. Sketches without tags are skipped."""
    if present.shape != (patch_emb.shape[0], prompt_emb.shape[0]):
        raise ValueError(f"present must be (B, C) = ({patch_emb.shape[0]}, {prompt_emb.shape[0]}), "
                         f"got {tuple(present.shape)}")
    scores = logit_scale * soft_max_pool(patch_emb, prompt_emb, temperature)
    target = present.to(scores.dtype)
    n = target.sum(dim=1, keepdim=True)
    keep = n[:, 0] > 0
    if not bool(keep.any()):
        return scores.sum() * 0.0
    ce = -((target / n.clamp_min(1.0)) * F.log_softmax(scores, dim=1)).sum(dim=1)
    return ce[keep].mean()


def ink_patch_loss(patch_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float,
                   patch_ink: torch.Tensor, groups: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """Patch-to-text InfoNCE for the inked patches of single-object sketches.

    In a sketch of one object every inked patch shows that object, so each patch token (B, K, D)
    is classified among the batch's texts (T = B, L2-normalised) with the image's own text (or,
    with ``groups``, any text of its group) as the target. ``patch_ink`` (B, K) weights the
    patches (0 = not scored: empty patches, scene images). Returns the weighted mean cross-entropy
    (0 when nothing is scored).
    """
    b, k, _ = patch_emb.shape
    if text_emb.shape[0] != b or patch_ink.shape != (b, k):
        raise ValueError(f"expected texts ({b}, D) and patch_ink ({b}, {k}), got {tuple(text_emb.shape)} "
                         f"and {tuple(patch_ink.shape)}")
    logits = logit_scale * torch.einsum("bkd,td->bkt", patch_emb, text_emb)
    targets = _pair_targets(b, groups, logits)
    ce = -(targets[:, None, :] * F.log_softmax(logits, dim=-1)).sum(dim=-1)  # (B, K)
    w = patch_ink.to(ce.dtype)
    return (w * ce).sum() / w.sum().clamp_min(1e-6)


def patch_ink(grey_u8: torch.Tensor, patch_size: int, min_ink: float) -> torch.Tensor:
    """Mean ink (1 - grey) of every patch, (B, S, S) uint8 -> (B, K) row-major; below ``min_ink`` -> 0."""
    ink = 1.0 - grey_u8.float().unsqueeze(1) / 255.0
    per_patch = F.avg_pool2d(ink, patch_size).flatten(1)
    return torch.where(per_patch >= min_ink, per_patch, torch.zeros_like(per_patch))


# --------------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------------
MeanStd = tuple[tuple[float, ...], tuple[float, ...]]


def create_tiny_clip(clip_model: str, seed: int) -> tuple[nn.Module, Callable[..., torch.Tensor], MeanStd]:
    """A randomly initialised open_clip model (seeded), its tokenizer and image mean/std.

    QuickGELU stays off, as ``load_clip`` assumes for a local file whose path does not mention "openai".
    """
    import open_clip

    from sketchseg.model.clip_loader import OPENAI_MEAN, OPENAI_STD, register_model_configs

    register_model_configs()
    if clip_model not in open_clip.list_models():
        raise SketchSegConfigError(f"pretrain.clip_model '{clip_model}' is not an open_clip architecture")
    torch.manual_seed(int(seed))
    model = open_clip.create_model(clip_model, pretrained=None, force_quick_gelu=False).float()
    visual = model.visual
    pp = getattr(visual, "preprocess_cfg", None) or {}
    mean = tuple(float(v) for v in pp.get("mean", getattr(visual, "image_mean", None) or OPENAI_MEAN))
    std = tuple(float(v) for v in pp.get("std", getattr(visual, "image_std", None) or OPENAI_STD))
    return model, open_clip.get_tokenizer(clip_model), (mean, std)


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


# --------------------------------------------------------------------------------------------------
# training loop
# --------------------------------------------------------------------------------------------------
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
    """Pre-train ``cfg.clip_model`` from a seeded random init; same config -> same weights (same threads)."""
    cfg.check()
    previous_threads = torch.get_num_threads()
    if cfg.num_threads is not None:
        torch.set_num_threads(int(cfg.num_threads))
    try:
        return _pretrain(cfg, progress=progress, log_every=log_every)
    finally:
        torch.set_num_threads(previous_threads)


def _pretrain(cfg: PretrainConfig, *, progress: bool, log_every: int) -> PretrainResult:
    from sketchseg.engine.runtime import resolve_device

    t_start = time.perf_counter()
    device = resolve_device(cfg.device)
    model, tokenizer, mean_std = create_tiny_clip(cfg.clip_model, cfg.seed)
    model.to(device)
    image_size = _image_size(model)
    patch_size = int(model.visual.conv1.kernel_size[0])
    patch_losses = cfg.ink_loss_weight > 0 or cfg.mil_loss_weight > 0
    encoder = None
    if cfg.vv_blocks and patch_losses:
        from sketchseg.model.encoder import SketchEncoder

        encoder = SketchEncoder(model.visual, vv_blocks=cfg.vv_blocks)  # shares the weights, adds none
    with torch.no_grad():
        model.logit_scale.fill_(math.log(cfg.logit_scale_init))
    max_log_scale = math.log(cfg.logit_scale_max)

    t0 = time.perf_counter()
    pool = build_pool(cfg, STREAM_TRAIN, cfg.pool_size if cfg.steps > 0 else 0, image_size=image_size,
                      progress=progress)
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
    bar = tqdm(range(cfg.steps), desc="pre-train tiny CLIP", unit="step", disable=None if progress else True)
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
        loss_ink = loss_mil = None
        if cfg.ink_loss_weight > 0:
            single = torch.tensor([pool.kinds[i] == "single" for i in idx], dtype=torch.float32, device=device)
            ink = patch_ink(pool.images[idx], patch_size, cfg.min_patch_ink).to(device) * single[:, None]
            loss_ink = ink_patch_loss(patches, txt, scale, ink, groups)
            loss = loss + cfg.ink_loss_weight * loss_ink
        if cfg.mil_loss_weight > 0:
            prompt_emb = F.normalize(model.encode_text(prompt_tokens), dim=-1)
            present = torch.tensor([[c in pool.objects[i] for c in CATEGORIES] for i in idx], device=device)
            loss_mil = mil_loss(patches, prompt_emb, scale, present, cfg.mil_temperature)
            loss = loss + cfg.mil_loss_weight * loss_mil
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


# --------------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------------
def weights_metadata(cfg: PretrainConfig, summary: Mapping[str, Any]) -> dict[str, str]:
    """safetensors metadata (str -> str) stored with the weights."""
    keep = ("steps", "final_loss_ema", "after_zero_shot_acc", "after_scene_r1", "seconds")
    return {
        "format": WEIGHTS_FORMAT,
        "clip_model": cfg.clip_model,
        "config_fingerprint": cfg.fingerprint(),
        "pretrain_config": json.dumps(cfg.to_dict(), sort_keys=True),
        **{k: str(summary.get(k)) for k in keep},
    }


def save_weights(path: str | Path, state: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> Path:
    """Write an open_clip state dict as safetensors (readable by ``clip_loader.load_clip``)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(path),
              metadata={str(k): str(v) for k, v in metadata.items()})
    return path


def read_cached_weights(path: str | Path, fingerprint: str) -> dict[str, Any] | None:
    """``{"state", "metadata"}`` of ``path`` when it holds pre-trained weights of the same config, else None."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            if meta.get("format") != WEIGHTS_FORMAT or meta.get("config_fingerprint") != fingerprint:
                return None
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - an unreadable cache is simply rebuilt
        logger.warning("cannot reuse %s (%s); pre-training again", path, exc)
        return None
    return {"state": state, "metadata": meta}
