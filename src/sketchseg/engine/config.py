"""The trainer's and the evaluation's settings: :class:`TrainConfig` (``training.*``) and
:class:`EvalConfig` (``evaluation.*``), one default per key, equal to conf/base.

``from_dict`` refuses unknown keys, so that a typo fails at once rather than after hours.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sketchseg.data.annotated import AnnotatedSketches
from sketchseg.data.strokes import RENDER_SIZE
from sketchseg.engine.metrics import METRIC_NAMES
from sketchseg.errors import SketchSegConfigError
from sketchseg.model.similarity import PAPER_ISOLATION_THRESHOLD

#: the checkpoints ``evaluation.checkpoint`` can name
CHECKPOINT_CHOICES = ("best", "last")
#: evaluation.model_config: whose model configuration scores a checkpoint (model.checkpoint.CONFIG_FROM)
MODEL_CONFIG_CHOICES = ("checkpoint", "conf")


#: the numeric precisions a run can use (bf16 autocast on CUDA; fp32 everywhere)
PRECISIONS = ("bf16", "fp32")


def _kinds(cls: type, key: str) -> tuple[set[str], bool]:
    """The plain kinds (``int``, ``float``, ``bool``, ``str``) a field's annotation admits, and whether
    it admits None; an empty set for any other annotation (not checked here)."""
    text = str(cls.__dataclass_fields__[key].type).replace(" ", "")
    parts = set(text.split("|"))
    return parts & {"int", "float", "bool", "str"}, "None" in parts


def _fits(value: Any, kinds: set[str]) -> bool:
    if isinstance(value, bool):
        return "bool" in kinds
    if isinstance(value, int):
        return bool(kinds & {"int", "float"})
    if isinstance(value, float):
        return "float" in kinds
    if isinstance(value, str):
        if "str" in kinds:
            return True
        if "float" in kinds:  # a YAML float spelt without a dot (1e-6) is read as a string
            try:
                float(value)
                return True
            except ValueError:
                return False
    return False


_NOUNS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}


def _check_known(cls: type, d: Mapping[str, Any], section: str) -> None:
    """Unknown keys and values of the wrong type (``--params training.epochs=1.5``, ``training.seed=true``,
    ``training.max_val_sketches=abc``, a sub-key under a scalar such as ``training.epochs.x=1``) are
    refused in one line naming the key, the value and what is allowed."""
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(d) - known)
    if unknown:
        raise SketchSegConfigError(f"unknown {section} parameters {unknown}; known: {sorted(known)}")
    for key, value in d.items():
        kinds, optional = _kinds(cls, key)
        if not kinds or (value is None and optional) or _fits(value, kinds):
            continue
        allowed = " or ".join(_NOUNS[k] for k in ("bool", "int", "float", "str") if k in kinds)
        if kinds == {"int", "float"}:
            allowed = "a number"
        raise SketchSegConfigError(f"{section}.{key} must be {allowed}{' or null' if optional else ''}, got {value!r}")


def check_device_name(name: Any, section: str = "training") -> None:
    """``training.device`` is ``auto`` or a device torch knows (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    import torch

    try:
        torch.device(str(name)) if name != "auto" else None
    except RuntimeError:
        raise SketchSegConfigError(f"{section}.device must be auto, cpu, cuda or cuda:<index>, got {name!r}") from None


def _check_threads(n: Any, section: str) -> None:
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise SketchSegConfigError(f"{section}.num_threads must be a positive integer or null (torch's default), "
                                   f"got {n!r}")


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 16
    learning_rate: float = 1e-6
    threshold_learning_rate: float | None = None  # the learnable threshold's own rate (None: learning_rate)
    weight_decay: float = 0.01
    max_categories_per_sketch: int | None = None  # None: every category the caption names (the paper)
    drop_last: bool = False           # leave out an incomplete last batch each epoch
    seed: int = 42
    device: str = "auto"
    precision: str = "bf16"
    num_threads: int | None = None    # torch CPU threads (None: torch's default, the cores this process may use)
    num_workers: int = 4
    validate_before_training: bool = True
    selection_metric: str = "val_miou"
    max_val_sketches: int | None = None
    train_mode: bool = True
    nan_policy: str = "stop"          # stop | skip (skip the batch, count it, log it)
    resume: bool = False
    resume_despite_changes: bool = False  # resume although the state was trained with other settings (tagged)
    state_path: str | None = None     # full training state, rewritten atomically every epoch
    # speed (docs/benchmarks.md); none of these changes the result
    sync_every: int = 50              # steps between host checks of the device-side NaN flags
    fused_optimizer: bool = True      # fused AdamW: NaN batches skipped on the device, no per-step sync
    precompute_text: bool = True      # encode every caption / prompt once before the first epoch
    cache_val_set: bool = True        # render the validation sketches once, keep them in memory
    pin_memory: bool = True           # page-locked batches, asynchronous copies (CUDA only)
    persistent_workers: bool = True   # keep loader workers between epochs (num_workers > 0)
    prefetch_factor: int = 4          # batches each loader worker prepares ahead
    compile: bool = False             # torch.compile the sketch encoder (opt-in)
    # data parallel (torchrun); ignored by a single process
    ddp_find_unused_parameters: bool = True  # a process whose sketches have no category skips that pass

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """The ``training`` parameters, checked; unknown keys are refused."""
        _check_known(cls, d, "training")
        cfg = cls(**d)
        if cfg.nan_policy not in ("stop", "skip"):
            raise SketchSegConfigError(f"training.nan_policy must be 'stop' or 'skip', got {cfg.nan_policy!r}")
        if cfg.epochs < 0 or cfg.batch_size < 1:
            raise SketchSegConfigError("training.epochs must be >= 0 and training.batch_size >= 1")
        cap = cfg.max_categories_per_sketch
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise SketchSegConfigError(
                f"training.max_categories_per_sketch must be a positive integer or null (every category), got {cap!r}"
            )
        _check_threads(cfg.num_threads, "training")
        if not float(cfg.learning_rate) > 0:
            raise SketchSegConfigError(f"training.learning_rate must be a positive number, got {cfg.learning_rate!r}")
        if not float(cfg.weight_decay) >= 0:
            raise SketchSegConfigError(f"training.weight_decay must be >= 0, got {cfg.weight_decay!r}")
        if cfg.precision not in PRECISIONS:
            raise SketchSegConfigError(f"training.precision must be one of {', '.join(PRECISIONS)}, got {cfg.precision!r}")
        if cfg.max_val_sketches is not None and cfg.max_val_sketches < 1:
            raise SketchSegConfigError(f"training.max_val_sketches must be a positive integer or null (all), "
                                       f"got {cfg.max_val_sketches!r}")
        check_device_name(cfg.device)
        if cfg.sync_every < 1 or cfg.prefetch_factor < 1:
            raise SketchSegConfigError("training.sync_every and training.prefetch_factor must be >= 1")
        selectable = sorted(f"val_{k}" for k in METRIC_NAMES)
        if cfg.selection_metric not in selectable:
            raise SketchSegConfigError(
                f"training.selection_metric must be a validation metric, one of {selectable}; "
                f"got {cfg.selection_metric!r}"
            )
        if cfg.threshold_learning_rate is not None and not float(cfg.threshold_learning_rate) > 0:
            raise SketchSegConfigError(
                f"training.threshold_learning_rate must be positive or null, got {cfg.threshold_learning_rate!r}"
            )
        return cfg


#: the evaluation settings taken from the ``training`` section (evaluation runs where and as training does)
_FROM_TRAINING = ("device", "precision", "num_threads")


@dataclass(frozen=True)
class EvalConfig:
    """How annotated sketches are rendered and scored (the ``evaluation`` section; reference protocol).

    ``device``, ``precision`` and ``num_threads`` are NOT keys of the ``evaluation`` section: evaluation
    runs where and as training does, and :meth:`from_params` is the one place that takes them from the
    ``training`` section (``kedro run --params training.device=cpu`` thus reaches evaluation and the report;
    an OmegaConf ``${training.device}`` interpolation would not follow a ``--params`` override).
    """

    checkpoint: str = "best"                  # best (chosen on validation, §4.3) | last (Tab. S9 "Last")
    render_size: int = RENDER_SIZE            # annotated sketches rendered as the protocol does, at 512 px
    overlap_rule: str = "most_strokes"        # ground truth where strokes of two categories overlap
    empty_strokes: str = "wrong"              # Acc@S of a stroke that renders to no pixel: wrong | skip
    batch_size: int = 16
    num_workers: int = 2
    isolation_threshold: float = PAPER_ISOLATION_THRESHOLD  # §3.4 single-category isolation (the report's reference line)
    # which model configuration scores a checkpoint: "checkpoint" = its own, conf changing inference-time
    # settings only (model.config.OVERRIDABLE_KEYS; any other difference refused); "conf" = conf's model section
    model_config: str = "checkpoint"
    device: str = "auto"                      # = training.device (from_params)
    precision: str = "bf16"                   # = training.precision (from_params)
    num_threads: int | None = None            # = training.num_threads (from_params)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> EvalConfig:
        """The ``evaluation`` parameters (plus ``device`` / ``precision``), checked; unknown keys are refused."""
        d = dict(d or {})
        _check_known(cls, {k: v for k, v in d.items() if k not in _FROM_TRAINING}, "evaluation")
        _check_known(cls, {k: v for k, v in d.items() if k in _FROM_TRAINING}, "training")  # from_params takes them there
        cfg = cls(**d)
        if cfg.checkpoint not in CHECKPOINT_CHOICES:
            raise SketchSegConfigError(
                f"evaluation.checkpoint must be one of {list(CHECKPOINT_CHOICES)}, got {cfg.checkpoint!r}"
            )
        if cfg.overlap_rule not in AnnotatedSketches.OVERLAP_RULES:
            raise SketchSegConfigError(
                f"evaluation.overlap_rule must be one of {', '.join(AnnotatedSketches.OVERLAP_RULES)}, "
                f"got {cfg.overlap_rule!r}"
            )
        if cfg.empty_strokes not in AnnotatedSketches.EMPTY_STROKE_RULES:
            raise SketchSegConfigError(
                f"evaluation.empty_strokes must be one of {', '.join(AnnotatedSketches.EMPTY_STROKE_RULES)}, "
                f"got {cfg.empty_strokes!r}"
            )
        if cfg.model_config not in MODEL_CONFIG_CHOICES:
            raise SketchSegConfigError(
                f"evaluation.model_config must be one of {list(MODEL_CONFIG_CHOICES)}, got {cfg.model_config!r}"
            )
        if int(cfg.render_size) < 1:
            raise SketchSegConfigError("evaluation.render_size must be >= 1")
        if int(cfg.batch_size) < 1 or int(cfg.num_workers) < 0:
            raise SketchSegConfigError("evaluation.batch_size must be >= 1 and evaluation.num_workers >= 0")
        _check_threads(cfg.num_threads, "training")
        return cfg

    @classmethod
    def from_params(cls, evaluation: Mapping[str, Any] | None, training: Mapping[str, Any] | None) -> EvalConfig:
        """The ``evaluation`` section, with ``device`` / ``precision`` / ``num_threads`` from the ``training``
        section."""
        evaluation, training = dict(evaluation or {}), dict(training or {})
        own = sorted(set(_FROM_TRAINING) & set(evaluation))
        if own:
            raise SketchSegConfigError(
                f"evaluation.{own[0]} is not a setting of its own: evaluation runs with training.{own[0]}"
            )
        taken = {k: training[k] for k in _FROM_TRAINING if k in training}
        return cls.from_dict({**evaluation, **taken})
