"""The full training state behind an exact resume: RNG states, an atomic write, and the load.

``fit`` writes, after every epoch, the model's trainable tensors, the optimiser, the epoch, the
best checkpoint so far, the history, the loader generator and every RNG state; a resumed run
restores all of them and continues bit for bit (tests/pipelines/test_resume.py). The RNG states
are stored as tensors and plain numbers so that ``torch.load(weights_only=True)`` reads them.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sketchseg.errors import SketchSegConfigError

logger = logging.getLogger(__name__)


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
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_training_state(path: str | Path) -> dict:
    """Load a full training state written by ``fit`` (``weights_only=True``: no code runs)."""
    return torch.load(path, map_location="cpu", weights_only=True)


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


def resume_training(path: str | Path | None, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    generator: torch.Generator) -> ResumePoint:
    """Restore the state at ``path`` into ``model``, ``optimizer``, the loader ``generator`` and the
    global RNGs; returns where the run continues."""
    if not path or not Path(path).is_file():
        raise SketchSegConfigError(f"training.resume is true but no training state was found at {path!r}")
    state = load_training_state(path)
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
                   history: list[dict[str, float]], generator: torch.Generator, skipped_batches: int) -> dict:
    """The payload :func:`save_training_state` writes after an epoch (RNG states taken now)."""
    return {
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
