"""Training loop: AdamW, per-epoch validation, checkpoint chosen on validation mIoU, exact resume."""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from sketchseg.engine.data import AnnotatedSketches, TrainSketches, collate_train
from sketchseg.engine.evaluate import evaluate_model
from sketchseg.engine.runtime import autocast, resolve_device, rng_state, seed_everything, set_rng_state
from sketchseg.errors import SketchSegConfigError, SketchSegError
from sketchseg.model.checkpoint import trainable_state_dict

logger = logging.getLogger(__name__)


class NonFiniteLossError(SketchSegError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 16
    learning_rate: float = 1e-6
    weight_decay: float = 0.01
    max_categories_per_sketch: int = 3
    seed: int = 42
    device: str = "auto"
    precision: str = "bf16"
    num_workers: int = 4
    validate_before_training: bool = True
    selection_metric: str = "val_miou"
    max_val_sketches: int | None = None
    train_mode: bool = True
    nan_policy: str = "stop"          # stop | skip (skip the batch, count it, log it)
    resume: bool = False
    state_path: str | None = None     # full training state, rewritten atomically every epoch

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SketchSegConfigError(f"unknown training parameters {unknown}; known: {sorted(known)}")
        cfg = cls(**d)
        if cfg.nan_policy not in ("stop", "skip"):
            raise SketchSegConfigError(f"training.nan_policy must be 'stop' or 'skip', got {cfg.nan_policy!r}")
        if cfg.epochs < 0 or cfg.batch_size < 1:
            raise SketchSegConfigError("training.epochs must be >= 0 and training.batch_size >= 1")
        return cfg


@dataclass
class FitResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_metric: float
    last_state: dict[str, torch.Tensor]
    last_epoch: int
    history: pd.DataFrame
    extra: dict = field(default_factory=dict)


def _clone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in trainable_state_dict(model).items()}


def _save_state_atomic(path: str | Path, payload: dict) -> None:
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


def _numpy_state_to_tensors(state: tuple) -> dict:
    name, keys, pos, has_gauss, cached = state
    return {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _numpy_state_from_tensors(d: dict) -> tuple:
    return (d["name"], d["keys"].numpy().astype(np.uint32), d["pos"], d["has_gauss"], d["cached"])


def _portable_rng_state() -> dict:
    s = rng_state()
    s["numpy"] = _numpy_state_to_tensors(s["numpy"])
    return s


def _restore_portable_rng_state(s: dict) -> None:
    s = dict(s)
    s["numpy"] = _numpy_state_from_tensors(s["numpy"])
    set_rng_state(s)


def load_training_state(path: str | Path) -> dict:
    """Load a full training state written by :func:`fit` (``weights_only=True``: no code runs)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def fit(
    model: torch.nn.Module,
    train_set: TrainSketches,
    val_set: AnnotatedSketches | None,
    cfg: TrainConfig,
    *,
    eval_batch_size: int = 16,
    eval_num_workers: int = 0,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    stop_after_epoch: int | None = None,
) -> FitResult:
    """Train ``model`` and keep the trainable state of the epoch with the best validation metric.

    Epoch 0 is the model before training (logged when ``validate_before_training``); the chosen
    checkpoint is the best of epochs 1..E (epoch 0 only when ``epochs == 0`` or ``train_mode`` is
    false). ``on_epoch_end(epoch, metrics)`` receives every logged number. With
    ``cfg.state_path`` the full state (model, optimiser, threshold, RNG states, epoch, best so far,
    history) is written atomically after every epoch, and ``cfg.resume`` continues from it.
    ``stop_after_epoch`` ends the loop early, as an interrupted run would (used by tests).
    """
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.train_mode and cfg.epochs > 0 and not params:
        raise SketchSegConfigError("no trainable parameters: check model.finetune")
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay) if params else None
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        shuffle=True,
        num_workers=cfg.num_workers,
        collate_fn=collate_train,
        generator=generator,
        pin_memory=device.type == "cuda",
        drop_last=False,
        persistent_workers=False,
    )
    history: list[dict[str, float]] = []
    best_metric, best_epoch, best_state = -math.inf, 0, _clone_state(model)
    start_epoch = 1
    skipped_total = 0

    def validate(epoch: int) -> dict[str, float]:
        if val_set is None or len(val_set) == 0:
            return {}
        res = evaluate_model(model, val_set, device=device, batch_size=eval_batch_size,
                             num_workers=eval_num_workers, precision=cfg.precision, desc=f"val epoch {epoch}")
        return res.prefixed("val")

    def emit(epoch: int, metrics: dict[str, float]) -> None:
        history.append({"epoch": epoch, **metrics})
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)

    if cfg.resume:
        if not cfg.state_path or not Path(cfg.state_path).is_file():
            raise SketchSegConfigError(
                f"training.resume is true but no training state was found at {cfg.state_path!r}"
            )
        state = load_training_state(cfg.state_path)
        missing, unexpected = model.load_state_dict(state["model"], strict=False)
        if unexpected:
            raise SketchSegConfigError(f"training state {cfg.state_path} has keys this model lacks: {unexpected[:10]}")
        if optimizer is not None and state.get("optimizer"):
            optimizer.load_state_dict(state["optimizer"])
        history = list(state["history"])
        best_metric, best_epoch = float(state["best_metric"]), int(state["best_epoch"])
        best_state = dict(state["best_state"])
        start_epoch = int(state["epoch"]) + 1
        generator.set_state(state["loader_generator"])
        _restore_portable_rng_state(state["rng"])
        skipped_total = int(state.get("skipped_batches", 0))
        logger.info("resumed from %s at epoch %d (best %s=%.3f at epoch %d)",
                    cfg.state_path, start_epoch, cfg.selection_metric, best_metric, best_epoch)
    elif cfg.validate_before_training or not cfg.train_mode or cfg.epochs == 0:
        m0 = validate(0)
        emit(0, m0)
        best_metric = m0.get(cfg.selection_metric, -math.inf)

    n_epochs = cfg.epochs if cfg.train_mode else 0
    for epoch in range(start_epoch, n_epochs + 1):
        train_set.set_epoch(epoch)
        model.train()
        t0 = time.perf_counter()
        sums: dict[str, torch.Tensor] = {}
        n_batches, skipped = 0, 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{n_epochs}", leave=False, disable=None)
        for batch in bar:
            images = batch["images"].to(device, non_blocking=True)
            with autocast(device, cfg.precision):
                out = model.training_losses(images, batch["captions"], batch["categories"], batch["prompts"])
            loss = out["loss"]
            if not torch.isfinite(loss.detach()).item():
                if cfg.nan_policy == "stop":
                    raise NonFiniteLossError(
                        f"non-finite training loss ({loss.item()}) at epoch {epoch}, batch {n_batches + skipped}"
                        f" (sketch ids {batch['sketch_id'][:8]}...); lower training.learning_rate, check the"
                        " data, or set training.nan_policy=skip to skip such batches"
                    )
                skipped += 1
                optimizer.zero_grad(set_to_none=True)
                continue
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            n_batches += 1
            for k in ("loss", "loss_global", "loss_category"):
                if k in out:
                    sums[k] = sums.get(k, 0.0) + out[k].detach().float()
        metrics = {f"train_{k}": float(v) / max(n_batches, 1) for k, v in sums.items()}
        thr = out.get("threshold") if n_batches else None
        if thr is not None:
            metrics["threshold"] = float(thr)
        metrics["epoch_seconds"] = time.perf_counter() - t0
        metrics["skipped_batches"] = float(skipped)
        skipped_total += skipped
        if skipped:
            logger.warning("epoch %d: skipped %d batches with a non-finite loss", epoch, skipped)
        metrics.update(validate(epoch))
        emit(epoch, metrics)
        score = metrics.get(cfg.selection_metric)
        if score is not None and (score > best_metric or best_epoch == 0):
            best_metric, best_epoch, best_state = score, epoch, _clone_state(model)
        logger.info(
            "epoch %d: loss %.4f, %s %.2f (best %.2f @ %d), %.1fs",
            epoch, metrics.get("train_loss", float("nan")), cfg.selection_metric,
            metrics.get(cfg.selection_metric, float("nan")), best_metric, best_epoch, metrics["epoch_seconds"],
        )
        if cfg.state_path:
            _save_state_atomic(cfg.state_path, {
                "model": _clone_state(model),
                "optimizer": optimizer.state_dict() if optimizer is not None else {},
                "epoch": epoch,
                "best_metric": best_metric,
                "best_epoch": best_epoch,
                "best_state": best_state,
                "history": history,
                "rng": _portable_rng_state(),
                "loader_generator": generator.get_state(),
                "skipped_batches": skipped_total,
            })
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            logger.warning("stopping after epoch %d as asked", epoch)
            break

    last_epoch = history[-1]["epoch"] if history else 0
    return FitResult(
        best_state=best_state,
        best_epoch=best_epoch,
        best_metric=best_metric,
        last_state=_clone_state(model),
        last_epoch=last_epoch,
        history=pd.DataFrame(history),
        extra={"skipped_batches": skipped_total, "config": asdict(cfg)},
    )
