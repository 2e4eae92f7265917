"""Convert the authors' released checkpoint (``sketch_seg_best_miou.pth``) to a sketchseg checkpoint.

Their file is a ``torch.save`` of a DataParallel ``state_dict`` (keys prefixed ``module.``) of
their ``ModifiedCLIPSurgery`` (AhmedBourouis/Scene-Sketch-Segmentation, ``models/our_model.py``):
OpenAI CLIP ViT-B/16 in CLIP Surgery's layout, both towers, with their 3 visual prompts, the
fine-tuned visual tower and their cross-attention layer (``models/ca.py``). Key by key:

* ``visual.*`` CLIP keys -> ``encoder.visual.*``; in the six v-v blocks their ``attn.qkv`` /
  ``attn.proj`` -> open_clip's ``attn.in_proj_*`` / ``attn.out_proj.*``; ``visual.attn.*`` is the
  same module as the 7th block's attention in their model (and is loaded last there, so its values
  win when the two differ; a warning says so);
* ``visual.prompt_embeddings`` (1, S, width) -> ``encoder.prompts.tokens`` (S, width);
* ``visual.transformer.ca.text_projection`` and ``...ca.encoder.layer2.0.*`` (the layer their forward
  runs) -> ``encoder.authors_cross_attention.*``;
* text keys (``token_embedding``, ``positional_embedding``, ``transformer.resblocks``, ``ln_final``,
  ``text_projection``, ``logit_scale``) -> ``text.*``.

Dropped, because their forward never reads them: ``...ca.encoder.layers.0.*`` and
``...ca.encoder.layer1.0.*`` (built, never called) and the text tower's own cross-attention
``transformer.ca.*``. Any other key is an error. The result holds every weight
(``save_checkpoint(with_clip_weights=True)``), so no CLIP download is needed to use it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sketchseg.errors import SketchSegConfigError
from sketchseg.model.checkpoint import save_checkpoint
from sketchseg.model.config import ModelConfig
from sketchseg.model.model import SketchSegModel, build_model

logger = logging.getLogger(__name__)

SOURCE = "github.com/AhmedBourouis/Scene-Sketch-Segmentation (commit af751b1), checkpoint sketch_seg_best_miou.pth"
# the model configuration of their released model at test time (test.py): ViT-B/16 with QuickGELU,
# the surgery's v-v path in the last 6 blocks, their cross-attention on the final tokens, their scoring
AUTHORS_MODEL = {
    "pretrained": "openai", "quick_gelu": True, "image_size": 224, "visual_prompt_init_range": 0.0625,
    "prompt_dropout": 0.1, "vv_train": True, "vv_inference": True, "use_category_level": True,
    "cross_attention": False, "thresholding": "none", "upsample_mode": "bilinear", "margin": 0.5,
    "distance": "l1", "finetune": "full", "inference_normalization": "minmax", "inference_prompts": "ensemble",
    "ensemble_subtract_empty": True, "test_time_cross_attention": "authors", "feature_normalization": "authors_test",
    "input_resize": "authors_bicubic_rgb8",
}
# (visual width, patch size, visual blocks) -> open_clip architecture
ARCHITECTURES = {(768, 16, 12): "ViT-B-16", (768, 32, 12): "ViT-B-32"}

_CA = "visual.transformer.ca."
_CA_USED = {
    "text_projection": "text_proj",
    "encoder.layer2.0.self_attn.linears.0": "q_proj",
    "encoder.layer2.0.self_attn.linears.1": "k_proj",
    "encoder.layer2.0.self_attn.linears.2": "v_proj",
    "encoder.layer2.0.self_attn.linears.3": "out_proj",
    "encoder.layer2.0.feed_forward.w_1": "ffn_in",
    "encoder.layer2.0.feed_forward.w_2": "ffn_out",
    "encoder.layer2.0.sublayer.0.norm": "norm1",
    "encoder.layer2.0.sublayer.1.norm": "norm2",
}
_DROPPED = (_CA + "encoder.layers.", _CA + "encoder.layer1.", "transformer.ca.")
_TEXT = ("token_embedding.", "positional_embedding", "ln_final.", "text_projection", "logit_scale",
         "transformer.resblocks.")
_SURGERY = {"attn.qkv.weight": "attn.in_proj_weight", "attn.qkv.bias": "attn.in_proj_bias",
            "attn.proj.weight": "attn.out_proj.weight", "attn.proj.bias": "attn.out_proj.bias"}


class NotAuthorsCheckpoint(SketchSegConfigError):
    """The file is not the authors' checkpoint (or does not fit the model it should build)."""


@dataclass
class Conversion:
    """What ``map_authors_state`` did: sketchseg name -> tensor, and the keys it dropped."""

    state: dict[str, torch.Tensor]
    dropped: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # sketchseg name -> their key
    superseded: list[str] = field(default_factory=list)  # their block keys whose visual.attn.* alias won


def read_authors_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Their state dict with ``module.`` stripped, read with ``torch.load(weights_only=True)``."""
    path = Path(path)
    if not path.is_file():
        raise NotAuthorsCheckpoint(f"{path}: no such file")
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4 ...": the error below says enough
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling errors come in many types
        text = str(exc)
        code = re.search(r"Unsupported global: GLOBAL [\w.]+", text)
        if code:  # torch's weights-only unpickler refused a reference to a Python function or class
            raise NotAuthorsCheckpoint(
                f"{path} holds code or Python objects other than tensors ({code.group(0)}): it was not loaded "
                "(sketchseg never unpickles more than tensors); it is not the authors' checkpoint"
            ) from None
        # torch's own first line is advice to load it unsafely: its unpickler's reason instead
        detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
        first = detail.group(1).strip() if detail else (text.strip().splitlines()[0] if text.strip()
                                                         else type(exc).__name__)
        raise NotAuthorsCheckpoint(
            f"{path} is not the authors' checkpoint: torch.load(weights_only=True) cannot read it ({first[:200]})"
        ) from exc
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise NotAuthorsCheckpoint(f"{path} is not the authors' checkpoint: it does not hold a state dict of tensors")
    state = {(str(k)[len("module."):] if str(k).startswith("module.") else str(k)): v for k, v in obj.items()}
    needed = ("visual.prompt_embeddings", _CA + "text_projection.weight", "visual.conv1.weight")
    absent = [k for k in needed if k not in state]
    if absent:
        raise NotAuthorsCheckpoint(
            f"{path} is not the authors' checkpoint: it has no {', '.join(absent)} "
            f"({len(state)} tensors, e.g. {sorted(state)[:3]})"
        )
    return state


def architecture(state: dict[str, torch.Tensor]) -> str:
    """The open_clip architecture of their visual tower."""
    conv = state["visual.conv1.weight"]
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"visual\.transformer\.resblocks\.(\d+)\.", k))}
    key = (int(conv.shape[0]), int(conv.shape[-1]), len(blocks))
    if key not in ARCHITECTURES:
        raise NotAuthorsCheckpoint(f"visual tower of width {key[0]}, patch {key[1]}, {key[2]} blocks: not a known "
                                   f"architecture ({ARCHITECTURES}); pass --clip-model")
    return ARCHITECTURES[key]


def map_authors_state(state: dict[str, torch.Tensor], n_layers: int) -> Conversion:
    """Map every key of their state dict (``module.`` stripped) to a ``SketchSegModel`` parameter."""
    out = Conversion(state={})
    alias_block = n_layers - 6  # their surgery loop builds blocks -1..-6; self.attn keeps the last one

    def put(name: str, key: str, value: torch.Tensor) -> None:
        out.state[name] = value
        out.sources[name] = key

    aliases = []
    for key, value in state.items():
        if key.startswith(_DROPPED):
            out.dropped.append(key)
        elif key == "visual.prompt_embeddings":
            put("encoder.prompts.tokens", key, value.reshape(-1, value.shape[-1]))
        elif key.startswith(_CA):
            rest = key[len(_CA):]
            owner, _, leaf = rest.rpartition(".")
            if owner in _CA_USED:
                put(f"encoder.authors_cross_attention.{_CA_USED[owner]}.{leaf}", key, value)
            else:
                out.unknown.append(key)
        elif key.startswith("visual.attn."):
            aliases.append(key)
        elif key.startswith("visual."):
            m = re.match(r"visual\.transformer\.resblocks\.(\d+)\.(.+)$", key)
            if m and m.group(2) in _SURGERY:
                put(f"encoder.visual.transformer.resblocks.{m.group(1)}.{_SURGERY[m.group(2)]}", key, value)
            else:
                put("encoder." + key, key, value)
        elif key.startswith(_TEXT):
            put("text." + key, key, value)
        else:
            out.unknown.append(key)
    for key in aliases:  # loaded after the blocks in their model: these values win
        leaf = key[len("visual."):]  # attn.qkv.weight, ...
        if leaf not in _SURGERY:
            out.unknown.append(key)
            continue
        name = f"encoder.visual.transformer.resblocks.{alias_block}.{_SURGERY[leaf]}"
        if name in out.state and not torch.equal(out.state[name], state[key]):
            logger.warning("%s differs from block %d's own %s: using %s, as their load_state_dict does",
                           key, alias_block, leaf, key)
        if name in out.sources:
            out.superseded.append(out.sources[name])
        put(name, key, state[key])
    return out


def authors_model_config(state: dict[str, torch.Tensor], clip_model: str | None = None) -> ModelConfig:
    """The ``ModelConfig`` of their model at test time (``AUTHORS_MODEL``) for this state dict."""
    name = clip_model or architecture(state)
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"visual\.transformer\.resblocks\.(\d+)\.", k))}
    n = len(blocks)
    grid = int(round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5))
    return ModelConfig.from_dict({
        **AUTHORS_MODEL, "clip_model": name,
        "image_size": grid * int(state["visual.conv1.weight"].shape[-1]),
        "num_visual_prompts": int(state["visual.prompt_embeddings"].reshape(-1, state["visual.prompt_embeddings"].shape[-1]).shape[0]),
        "vv_blocks": list(range(n - 5, n + 1)),
        "category_loss_layers": [n], "cross_attention_layers": [n],  # unused: no sketchseg cross-attention
    })


def load_authors_into(model: SketchSegModel, conv: Conversion, source: str) -> None:
    """Copy the mapped tensors into ``model``; every parameter must be covered, with its shape."""
    params = dict(model.named_parameters())
    missing = sorted(set(params) - set(conv.state))
    unexpected = sorted(set(conv.state) - set(params))
    mismatched = [f"{conv.sources[k]} {tuple(v.shape)} vs {k} {tuple(params[k].shape)}"
                  for k, v in conv.state.items() if k in params and tuple(v.shape) != tuple(params[k].shape)]
    problems = []
    unmappable = sorted(conv.unknown + [conv.sources[k] for k in unexpected])
    if unmappable:
        problems.append(f"{len(unmappable)} key(s) it cannot map: {unmappable[:10]}")
    if missing:
        problems.append(f"{len(missing)} weight(s) missing: {missing[:10]}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {mismatched[:5]}")
    if problems:
        raise NotAuthorsCheckpoint(f"{source} is not the authors' checkpoint as expected: " + "; ".join(problems))
    with torch.no_grad():
        for name, value in conv.state.items():
            params[name].copy_(value.to(params[name].dtype))


def convert_authors_checkpoint(src: str | Path, dst: str | Path, *, clip_model: str | None = None) -> Conversion:
    """Read their file, map it, load it into the sketchseg model of ``authors_model_config`` and
    save that as a sketchseg checkpoint holding every weight. Returns what was mapped and dropped."""
    src, dst = Path(src), Path(dst)
    state = read_authors_file(src)
    cfg = authors_model_config(state, clip_model)
    model = build_model(cfg, weights_in_checkpoint=True).eval()
    conv = map_authors_state(state, len(model.encoder.visual.transformer.resblocks))
    load_authors_into(model, conv, str(src))
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    save_checkpoint(dst, model, {
        "kind": "authors", "epoch": "-1", "variant": "authors_released", "converted_from": src.name,
        "converted_from_sha256": digest, "source": SOURCE, "dropped_keys": sorted(conv.dropped),
    }, with_clip_weights=True)
    logger.info("converted %s (%d tensors, %d dropped as unused by their forward) -> %s",
                src, len(conv.state), len(conv.dropped), dst)
    return conv
