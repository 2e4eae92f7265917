"""Model configuration: one dataclass whose field names follow the paper.

Block indices (``vv_blocks``, ``cross_attention_layers``, ``category_loss_layers``) are
1-based, as in the paper ("7th, 10th and 12th layers").
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

from sketchseg.model.errors import ModelConfigError

logger = logging.getLogger(__name__)

THRESHOLDING_MODES = ("learnable", "none")
UPSAMPLE_MODES = ("bicubic", "bilinear")
DISTANCES = ("l2", "l1", "cosine")
# ln_prompts_ca: LN + prompts + the attention projections (in_proj: q/k/v, out_proj) of the blocks at
# cross_attention_layers, the wider reading of §3.3 "linear layers which take part in cross-attention"
FINETUNE_STRATEGIES = ("ln", "prompts", "ln_prompts", "ln_prompts_ca", "full")
INFERENCE_NORMALISATIONS = ("none", "minmax")
# the text of a category at evaluation / segmentation: "template" = model.prompt_template filled with
# its name (paper §3.4); "ensemble" = the 85-template ensemble of the authors' evaluation code
# (model/prompt_ensemble.py), minus the empty string's ensemble when ensemble_subtract_empty
INFERENCE_PROMPTS = ("template", "ensemble")
DEFAULT_PROMPT_TEMPLATE = "A sketch of {}."  # the paper's category prompt (§3.2, Fig. 2b)
# where the holistic (Eq. 1) sketch embedding comes from: "vst" = token 0 of the original q-k path
# (paper §3.1.1), "vv" = token 0 of the v-v path (CLIP Surgery fine-tuned with v-v in training,
# Tab. 2 CLIP Surgery**; needs model.vv_train)
HOLISTIC_TOKENS = ("vst", "vv")
# "fast": scaled_dot_product_attention for both paths, one shared q/k/v projection per block, all
# category images of a batch re-encoded in one pass, cached prompt/caption embeddings, loss masks
# built on the device without host syncs. "reference": the straightforward implementation of the
# same model (explicit matmul-softmax attention, separate projection for the v-v path, one encoder
# pass per category slot, text re-encoded every call); same losses and maps up to float rounding,
# kept for benchmarks and equivalence tests (benchmarks/bench_model.py, docs/benchmarks.md).
IMPLEMENTATIONS = ("fast", "reference")
# the authors' released checkpoint (sketchseg.weights convert-authors) at inference: "authors" applies
# their cross-attention layer (models/ca.py) to the final tokens of both paths, with the category's
# text (model/authors_layers.py); "none" (default) does not
TEST_TIME_CROSS_ATTENTION = ("none", "authors")
# how patch features are normalised before the similarity with a category: "feature" = L2 over the
# feature axis, a cosine (Eq. 3, default); "authors_test" = the authors' test.py (the published numbers):
# over the sketch's categories, then a dot product with the unnormalised category text;
# "authors_demo" = their demo.py / app.py: over the tokens, then the dot product
FEATURE_NORMALISATIONS = ("feature", "authors_test", "authors_demo")
# how segment() (sketchseg.api) turns a raster sketch of any size into the model's image_size input:
# "lanczos_float" (default) = the grey image in [0, 1] padded with white to a centred square, then resized
# as float with Lanczos, as sketchseg's training loader (data.strokes.load_sketch_image) does;
# "authors_bicubic_rgb8" = the authors' CLIP transform (their models/clip.py ``_transform``:
# Resize((S, S), bicubic) of the 8-bit RGB image, no crop, then ToTensor): the grey image quantised to 8 bit
# and resized bicubic by PIL; a non-square sketch is stretched to S x S as theirs is (not padded), and the
# maps are upsampled back to the image's (H, W). Their test-time scoring (feature_normalization authors_*)
# keeps only each feature's sign across categories, so the slightest input difference flips labels: the
# converted authors' checkpoint needs this one to give their labels (docs/paper-vs-code.md). The evaluation
# pipeline does not read it: it always resizes the protocol's 8-bit render bicubic, as their test.py does.
INPUT_RESIZES = ("lanczos_float", "authors_bicubic_rgb8")

#: keys that change how a trained model is run, never its weights or parameters: a checkpoint's own
#: configuration may be changed in these by the caller (conf, the api) when it is loaded
#: (``model.checkpoint.resolve_model_config``). vv_inference: the v-v path at inference (the
#: weights are the same); prompt_template: the text a category is given at inference
INFERENCE_KEYS = ("upsample_mode", "inference_normalization", "inference_prompts", "ensemble_subtract_empty",
                  "prompt_template", "feature_normalization", "input_resize", "vv_inference")
#: keys that say where the CLIP weights are and how the same maths is computed, not what the model is:
#: may differ too (the backbone fingerprint and the weights fingerprint check what was built)
LOCAL_KEYS = ("pretrained", "cache_dir", "allow_random_init", "implementation")
#: what a caller may change in a checkpoint's configuration; every other key (clip_model, quick_gelu,
#: image_size, vv_blocks, num_visual_prompts, finetune, cross_attention, test_time_cross_attention, the
#: training settings ...) is the checkpoint's own
OVERRIDABLE_KEYS = INFERENCE_KEYS + LOCAL_KEYS

_LAYER_LIST_FIELDS = ("vv_blocks", "cross_attention_layers", "category_loss_layers")
_BOOL_FIELDS = ("allow_random_init", "vv_train", "vv_inference", "use_category_level", "cross_attention",
                "use_global_loss", "ensemble_subtract_empty")
_INT_FIELDS = ("image_size", "num_visual_prompts")
_FLOAT_FIELDS = ("visual_prompt_init_range", "prompt_dropout", "cross_attention_dropout", "threshold_init",
                 "threshold_temperature", "margin")


@dataclass
class ModelConfig:
    """Every knob of the sketch encoder, the two-level training and inference.

    Defaults reproduce the paper (ViT-B/16, 3 prompts, v-v in blocks 7-12, cross-attention
    and multi-layer category loss at blocks 7/10/12, learnable threshold, margin 0.3).
    """

    clip_model: str = "ViT-B-16"
    pretrained: str | None = "openai"
    cache_dir: str | None = None
    allow_random_init: bool = False
    # None = automatic: the pretrained tag's own setting; for a local file, True only when
    # the model name ends in "-quickgelu" or the file path mentions "openai".
    quick_gelu: bool | None = None
    image_size: int = 224
    num_visual_prompts: int = 3
    visual_prompt_init_range: float = 0.0625
    prompt_dropout: float = 0.0
    vv_blocks: list[int] = field(default_factory=lambda: [7, 8, 9, 10, 11, 12])
    vv_train: bool = True
    vv_inference: bool = True
    use_category_level: bool = True
    cross_attention: bool = True
    cross_attention_layers: list[int] = field(default_factory=lambda: [7, 10, 12])
    cross_attention_dropout: float = 0.0
    category_loss_layers: list[int] = field(default_factory=lambda: [7, 10, 12])
    thresholding: str = "learnable"
    threshold_init: float = 0.5
    threshold_temperature: float = 0.05
    upsample_mode: str = "bicubic"
    use_global_loss: bool = True
    margin: float = 0.3
    distance: str = "l2"
    finetune: str = "ln_prompts"
    inference_normalization: str = "none"
    holistic_token: str = "vst"
    implementation: str = "fast"
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE  # the category prompt wherever categories come without prompts
    inference_prompts: str = "template"
    ensemble_subtract_empty: bool = True
    test_time_cross_attention: str = "none"
    feature_normalization: str = "feature"
    input_resize: str = "lanczos_float"  # how segment() resizes a raster sketch (INPUT_RESIZES above)

    def __post_init__(self) -> None:
        for key in _LAYER_LIST_FIELDS:
            value = getattr(self, key)
            if value is None:
                value = []
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise ModelConfigError(f"model.{key} must be a list of block indices, got {value!r}")
            try:
                setattr(self, key, [int(v) for v in value])
            except (TypeError, ValueError) as exc:
                raise ModelConfigError(f"model.{key} must be a list of integers, got {value!r}") from exc
        self._check_values()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> ModelConfig:
        """Build from a mapping (e.g. Kedro parameters), rejecting unknown keys."""
        d = dict(d or {})
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ModelConfigError(
                f"unknown model config key(s) {unknown}; valid keys are: {', '.join(names)}"
            )
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    # ------------------------------------------------------------------ validation
    def _check_values(self) -> None:
        """Checks that do not need the backbone."""

        def choice(name: str, allowed: tuple[str, ...]) -> None:
            value = getattr(self, name)
            if value not in allowed:
                raise ModelConfigError(f"model.{name} must be one of {list(allowed)}, got {value!r}")

        def prob(name: str) -> None:
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ModelConfigError(f"model.{name} must be in [0, 1], got {value!r}")

        for name in _BOOL_FIELDS:
            if not isinstance(getattr(self, name), bool):
                raise ModelConfigError(f"model.{name} must be true or false, got {getattr(self, name)!r}")
        if self.quick_gelu is not None and not isinstance(self.quick_gelu, bool):
            raise ModelConfigError(f"model.quick_gelu must be true, false or null, got {self.quick_gelu!r}")
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ModelConfigError(f"model.{name} must be an integer, got {value!r}")
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ModelConfigError(f"model.{name} must be a number, got {value!r}")
        choice("thresholding", THRESHOLDING_MODES)
        choice("upsample_mode", UPSAMPLE_MODES)
        choice("distance", DISTANCES)
        choice("finetune", FINETUNE_STRATEGIES)
        choice("inference_normalization", INFERENCE_NORMALISATIONS)
        choice("implementation", IMPLEMENTATIONS)
        choice("inference_prompts", INFERENCE_PROMPTS)
        choice("holistic_token", HOLISTIC_TOKENS)
        choice("test_time_cross_attention", TEST_TIME_CROSS_ATTENTION)
        choice("feature_normalization", FEATURE_NORMALISATIONS)
        choice("input_resize", INPUT_RESIZES)
        prob("prompt_dropout")
        prob("cross_attention_dropout")
        if not isinstance(self.prompt_template, str) or self.prompt_template.count("{}") != 1:
            raise ModelConfigError(
                f"model.prompt_template must hold exactly one '{{}}' for the category, got {self.prompt_template!r}"
            )
        if not isinstance(self.clip_model, str) or not self.clip_model:
            raise ModelConfigError(f"model.clip_model must be an open_clip model name, got {self.clip_model!r}")
        if self.pretrained is not None and (not isinstance(self.pretrained, str) or not self.pretrained.strip()):
            raise ModelConfigError(
                f"model.pretrained must be an open_clip tag, a weight file path or null, got {self.pretrained!r}"
            )
        if self.pretrained is None and not self.allow_random_init:
            raise ModelConfigError(
                "model.pretrained is null (random CLIP weights) but model.allow_random_init is false; "
                "set model.pretrained to an open_clip tag (e.g. 'openai') or a local weight file, "
                "or set model.allow_random_init: true for smoke tests"
            )
        if int(self.image_size) <= 0:
            raise ModelConfigError(f"model.image_size must be positive, got {self.image_size!r}")
        if int(self.num_visual_prompts) < 0:
            raise ModelConfigError(f"model.num_visual_prompts must be >= 0, got {self.num_visual_prompts!r}")
        if float(self.visual_prompt_init_range) < 0:
            raise ModelConfigError(
                f"model.visual_prompt_init_range must be >= 0, got {self.visual_prompt_init_range!r}"
            )
        if not 0.0 < float(self.threshold_init) < 1.0:
            raise ModelConfigError(f"model.threshold_init must be in (0, 1), got {self.threshold_init!r}")
        if not float(self.threshold_temperature) > 0.0:
            raise ModelConfigError(
                f"model.threshold_temperature must be > 0, got {self.threshold_temperature!r}"
            )
        if float(self.margin) < 0.0:
            raise ModelConfigError(f"model.margin must be >= 0, got {self.margin!r}")
        if self.finetune == "ln" and int(self.num_visual_prompts) > 0:
            raise ModelConfigError(
                "model.finetune='ln' trains LayerNorms only, so visual prompts would stay at their random "
                f"initialisation; set model.num_visual_prompts: 0 (paper Fig. 6 'LN'), got {self.num_visual_prompts}"
            )
        if self.use_category_level and not self.category_loss_layers:
            raise ModelConfigError(
                "model.category_loss_layers is empty but model.use_category_level is true; "
                "use e.g. [7, 10, 12] (paper) or [12] (w/o multi-layer loss)"
            )
        if (self.vv_train or self.vv_inference) and not self.vv_blocks:
            raise ModelConfigError(
                "model.vv_blocks is empty but model.vv_train / model.vv_inference is true; "
                "set the v-v blocks (paper: [7, 8, 9, 10, 11, 12]) or turn vv_train / vv_inference off"
            )
        if self.holistic_token == "vv" and not self.vv_train:
            raise ModelConfigError(
                "model.holistic_token is 'vv' (holistic embedding from the v-v path) but model.vv_train is "
                "false; set model.vv_train: true or model.holistic_token: vst"
            )
        if not self.use_global_loss and not self.use_category_level:
            raise ModelConfigError(
                "model.use_global_loss and model.use_category_level are both false: there would be no loss"
            )
        if self.finetune == "ln_prompts_ca" and not (self.cross_attention and self.use_category_level
                                                     and self.cross_attention_layers):
            raise ModelConfigError(
                "model.finetune='ln_prompts_ca' also trains the attention of the cross-attention blocks, but this "
                "model has no cross-attention (model.cross_attention / use_category_level / cross_attention_layers)"
            )
        if self.cross_attention and self.use_category_level and not self.cross_attention_layers:
            raise ModelConfigError(
                "model.cross_attention is true but model.cross_attention_layers is empty"
            )

    def validate(self, n_layers: int) -> None:
        """Full validation, including block indices against the backbone's ``n_layers`` blocks."""
        self._check_values()
        for key in _LAYER_LIST_FIELDS:
            values = list(getattr(self, key))
            bad = [v for v in values if not 1 <= int(v) <= n_layers]
            if bad:
                raise ModelConfigError(
                    f"model.{key} = {values} contains {bad}: block indices are 1-based and "
                    f"{self.clip_model} has {n_layers} blocks (valid 1..{n_layers})"
                )
            if len(set(values)) != len(values):
                raise ModelConfigError(f"model.{key} = {values} contains duplicates")
