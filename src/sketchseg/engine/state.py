"""The full training state behind an exact resume: RNG states, an atomic write, and the load.

``fit`` writes, after every epoch, the model's trainable tensors, the optimiser, the epoch, the
best checkpoint so far, the history, the loader generator and every RNG state; a resumed run
restores all of them and continues bit for bit (tests/pipelines/test_resume.py). The RNG states
are stored as tensors and plain numbers so that ``torch.load(weights_only=True)`` reads them.

The state also records its lineage (:func:`run_lineage`): the model and training configuration
that shape the weights and a fingerprint of the training split and its prompts, plus the MLflow
run that wrote it. A resume with other settings is refused (:func:`lineage_differences`) unless
``training.resume_despite_changes`` is set.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sketchseg.errors import SketchSegConfigError, SketchSegDataError
from sketchseg.model import fileio

logger = logging.getLogger(__name__)

#: training keys that do not shape the weights, left out of the lineage: how to resume and where
#: (resume, resume_despite_changes, state_path), how long (epochs: a resume usually extends a run),
#: where it runs (device, num_threads: a run may move to another machine; its float rounding then
#: differs, README "Reproducibility") and the speed switches documented as
#: not changing the numbers (loader workers, NaN-check interval, fused optimiser, text / val caches,
#: pinned memory, compile, data-parallel bookkeeping), and the epoch-0 validation (no weight change)
TRAINING_KEYS_NOT_IN_LINEAGE = (
    "resume", "resume_despite_changes", "state_path", "epochs", "device", "num_threads", "num_workers",
    "sync_every", "fused_optimizer", "precompute_text", "cache_val_set", "pin_memory", "persistent_workers",
    "prefetch_factor", "compile", "ddp_find_unused_parameters", "validate_before_training",
)
#: model keys that do not shape the weights: the implementation (the same maths), where weights are cached
MODEL_KEYS_NOT_IN_LINEAGE = ("implementation", "cache_dir", "allow_random_init")
_WHAT_TO_DO = "delete it or set training.resume=false to start afresh"


def data_fingerprint(table: Any) -> str:
    """sha256 of the training sketches (ids) with their categories and prompts, in id order."""
    rows = sorted((int(sid), list(cats) if cats is not None else [], list(prompts) if prompts is not None else [])
                  for sid, cats, prompts in zip(table["sketch_id"], table["categories"], table["prompts"]))
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode("utf-8")).hexdigest()


def run_lineage(model_config: Mapping[str, Any], train_config: Mapping[str, Any], fingerprint: str) -> dict[str, Any]:
    """What shapes a run's weights: ``{"model": {...}, "training": {...}, "data": {"train_split": sha}}``."""
    return {
        "model": {k: v for k, v in model_config.items() if k not in MODEL_KEYS_NOT_IN_LINEAGE},
        "training": {k: v for k, v in train_config.items() if k not in TRAINING_KEYS_NOT_IN_LINEAGE},
        "data": {"train_split": fingerprint},
    }


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def lineage_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``["training.seed (42 -> 7)", ...]``: every lineage key whose value differs (or is missing on one side)."""
    a, b = _flat(saved), _flat(current)
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
        if json.dumps(va, sort_keys=True, default=str) != json.dumps(vb, sort_keys=True, default=str):
            shown = "changed" if key == "data.train_split" else f"{va!r} -> {vb!r}"
            out.append(f"{key} ({shown})")
    return out


def saved_lineage(state: Mapping[str, Any]) -> dict[str, Any] | None:
    """The lineage a training state records (None for a state written before lineage was recorded)."""
    raw = state.get("lineage")
    return json.loads(raw) if isinstance(raw, str) and raw else None


def rng_state() -> dict:
    """Every RNG state a resumed run needs to continue exactly."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the states :func:`rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state_to_tensors(state: tuple) -> dict:
    name, keys, pos, has_gauss, cached = state
    return {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _numpy_state_from_tensors(d: dict) -> tuple:
    return (d["name"], d["keys"].numpy().astype(np.uint32), d["pos"], d["has_gauss"], d["cached"])


def portable_rng_state() -> dict:
    """:func:`rng_state` with numpy's state as tensors and numbers (loadable with ``weights_only``)."""
    s = rng_state()
    s["numpy"] = _numpy_state_to_tensors(s["numpy"])
    return s


def restore_portable_rng_state(s: dict) -> None:
    """Restore a :func:`portable_rng_state`."""
    s = dict(s)
    s["numpy"] = _numpy_state_from_tensors(s["numpy"])
    set_rng_state(s)


def save_training_state(path: str | Path, payload: dict) -> None:
    """Write ``payload`` to ``path`` atomically (a temporary file in the same folder, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with fileio.atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_training_state(path: str | Path) -> dict:
    """Load a full training state written by ``fit`` (``weights_only=True``: no code runs).

    An empty, truncated or foreign file raises :class:`SketchSegDataError` in one line naming the
    file and what to do."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise SketchSegDataError(f"training state {path} cannot be read ({exc.strerror}); {_WHAT_TO_DO}") from exc
    if size == 0:
        raise SketchSegDataError(f"training state {path} is empty (0 bytes); {_WHAT_TO_DO}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, not a torch file, a pickle with code in it ...
        why = (str(exc).strip().splitlines() or [""])[0][:200] or type(exc).__name__
        raise SketchSegDataError(
            f"training state {path} is unreadable, truncated or not a training state ({why}); {_WHAT_TO_DO}"
        ) from exc
    if not isinstance(state, dict):
        raise SketchSegDataError(f"training state {path} is not a sketchseg training state; {_WHAT_TO_DO}")
    return state


@dataclass
class ResumePoint:
    """Where a resumed run continues: the next epoch, the history and the best checkpoint so far."""

    start_epoch: int
    history: list[dict[str, float]]
    best_metric: float
    best_epoch: int
    best_state: dict[str, torch.Tensor]
    skipped_batches: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def check_backbone(state: Mapping[str, Any], model: torch.nn.Module, path: str | Path) -> None:
    """Refuse (one line) a training state written for another CLIP backbone architecture than
    ``model``'s (``clip_fingerprint``: names, shapes, activation, e.g. QuickGELU vs GELU), whatever
    ``training.resume_despite_changes`` says: its weights would mean something else in this model."""
    saved, now = state.get("clip_fingerprint") or "", getattr(model, "clip_fingerprint", None)
    if not saved:
        logger.warning("training state %s records no clip_fingerprint (written by an older sketchseg): "
                       "resuming without checking its backbone architecture", path)
    elif now is not None and saved != now:
        raise SketchSegConfigError(
            f"training state {path} was trained on another CLIP backbone architecture than model.clip_model "
            f"{getattr(model, 'model_name', '?')!r} builds now (clip_fingerprint differs: another model, or "
            f"another activation, model.quick_gelu); {_WHAT_TO_DO}")


def resume_training(path: str | Path | None, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    generator: torch.Generator) -> ResumePoint:
    """Restore the state at ``path`` into ``model``, ``optimizer``, the loader ``generator`` and the
    global RNGs; returns where the run continues."""
    if not path or not Path(path).is_file():
        raise SketchSegConfigError(f"training.resume is true but no training state was found at {path!r}")
    state = load_training_state(path)
    check_backbone(state, model, path)
    missing, unexpected = model.load_state_dict(state["model"], strict=False)
    if unexpected:
        raise SketchSegConfigError(f"training state {path} has keys this model lacks: {unexpected[:10]}")
    if optimizer is not None and state.get("optimizer"):
        optimizer.load_state_dict(state["optimizer"])
    point = ResumePoint(
        start_epoch=int(state["epoch"]) + 1,
        history=list(state["history"]),
        best_metric=float(state["best_metric"]),
        best_epoch=int(state["best_epoch"]),
        best_state=dict(state["best_state"]),
    )
    if "loader_generator" in state:
        generator.set_state(state["loader_generator"])
    restore_portable_rng_state(state["rng"])
    point.skipped_batches = int(state.get("skipped_batches", 0))
    return point


def training_state(*, model_state: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer | None, epoch: int,
                   best_metric: float, best_epoch: int, best_state: dict[str, torch.Tensor],
                   history: list[dict[str, float]], generator: torch.Generator, skipped_batches: int,
                   lineage: Mapping[str, Any] | None = None, run_id: str | None = None,
                   clip_fingerprint: str | None = None) -> dict:
    """The payload :func:`save_training_state` writes after an epoch (RNG states taken now); the
    lineage (JSON), the MLflow run id and the backbone's ``clip_fingerprint`` are strings, so
    ``weights_only`` loading reads them."""
    return {
        "lineage": json.dumps(lineage, sort_keys=True, default=str) if lineage is not None else "",
        "mlflow_run_id": run_id or "",
        "clip_fingerprint": clip_fingerprint or "",
        "model": model_state,
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "epoch": epoch,
        "best_metric": best_metric,
        "best_epoch": best_epoch,
        "best_state": best_state,
        "history": history,
        "rng": portable_rng_state(),
        "loader_generator": generator.get_state(),
        "skipped_batches": skipped_batches,
    }
