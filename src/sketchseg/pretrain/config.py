"""Configuration of the tiny-CLIP pre-training, and its seed keys."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from sketchseg.data.strokes import THICKNESS
from sketchseg.errors import SketchSegConfigError

__all__ = ["PretrainConfig", "SEED_TAG", "STREAM_TRAIN", "STREAM_EVAL", "STREAM_TEXT", "PRETRAIN_VERSION"]

SEED_TAG = 0x7C11_9E7A  # first word of every pre-training seed key (the sample's keys start with its seed)
STREAM_TRAIN, STREAM_EVAL, STREAM_TEXT = 0, 1, 2
PRETRAIN_VERSION = "1"  # bump when the data or the loop change in a way the config does not show


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
    min_scale: float = 1.0          # every pair shrunk by a log-uniform factor in [min_scale, 1] to a random place (1 = off)
    max_thickness: int | None = None  # every pair's pen width drawn uniformly in [thickness, max_thickness] (None = thickness)
    learning_rate: float = 2.0e-3
    weight_decay: float = 0.1       # not on biases, LayerNorms, embeddings' 1-d params, logit scale
    warmup_steps: int = 40          # linear warm-up, then cosine decay to 0
    logit_scale_init: float = 1.0 / 0.07   # CLIP's initial temperature
    logit_scale_max: float = 100.0         # CLIP's clamp
    ink_loss_weight: float = 1.0    # patch->text InfoNCE on the inked patches of single objects (0 = off)
    mil_loss_weight: float = 1.0    # multiple-instance loss: which categories a sketch holds, from its patches (0 = off)
    mil_temperature: float = 0.1    # soft maximum over patches of the patch-prompt cosine
    patch_label_loss_weight: float = 0.0  # patch -> category prompt cross-entropy from the generator's stroke labels (0 = off)
    min_patch_ink: float = 0.02     # patches with less mean ink are not scored by the ink loss
    # patch tokens the ink / MIL losses train: those of the v-v path through these 1-based blocks
    # (the sketch model's model.vv_blocks, what its similarity maps read), or [] = the plain
    # transformer's output tokens
    vv_blocks: list[int] = field(default_factory=lambda: [4, 5, 6])
    render_size: int = 256          # sketches rendered like the sample's raster files
    thickness: int = THICKNESS
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
                     "ink_loss_weight", "mil_loss_weight", "mil_temperature", "min_patch_ink",
                     "patch_label_loss_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise SketchSegConfigError(f"pretrain.{name} must be a number >= 0, got {value!r}")
        if not self.mil_temperature > 0:
            raise SketchSegConfigError(f"pretrain.mil_temperature must be > 0, got {self.mil_temperature!r}")
        if isinstance(self.max_zoom, bool) or not isinstance(self.max_zoom, (int, float)) or self.max_zoom < 1.0:
            raise SketchSegConfigError(f"pretrain.max_zoom must be a number >= 1, got {self.max_zoom!r}")
        if isinstance(self.min_scale, bool) or not isinstance(self.min_scale, (int, float)) or not 0.0 < self.min_scale <= 1.0:
            raise SketchSegConfigError(f"pretrain.min_scale must be a number in (0, 1], got {self.min_scale!r}")
        if self.max_thickness is not None and (isinstance(self.max_thickness, bool) or not isinstance(self.max_thickness, int)
                                               or self.max_thickness < self.thickness):
            raise SketchSegConfigError(f"pretrain.max_thickness must be null or an integer >= pretrain.thickness "
                                       f"({self.thickness}), got {self.max_thickness!r}")
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
