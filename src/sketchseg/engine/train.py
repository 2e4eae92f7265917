"""Training loop: AdamW, per-epoch validation, checkpoint chosen on validation mIoU, exact resume.

Speed (docs/benchmarks.md): the inner loop never waits for the device. The non-finite-loss check
runs on the device: with the fused AdamW (``training.fused_optimizer``) a batch whose loss is NaN /
inf is skipped INSIDE the optimiser step (``found_inf``, the mechanism of ``torch.amp.GradScaler``:
parameters, moments and step count stay as they were), and the host looks at the device-side flags
only every ``training.sync_every`` steps and at the end of the epoch. ``nan_policy: skip`` thus
skips exactly the bad batches' updates; ``nan_policy: stop`` raises ``NonFiniteLossError`` (naming
the epoch, the batch and its sketch ids) at the next check, at most ``sync_every - 1`` steps later,
the parameters untouched by the bad batch. Without the fused optimiser the loss is checked on the
host every step (the previous behaviour). Text embeddings of every caption / prompt are computed
once before the first epoch (``training.precompute_text``), the validation sketches are rendered
once (``training.cache_val_set``), loader workers are persistent and prefetch.

Data parallel (``torchrun --nproc-per-node=N -m sketchseg.launch``, see
``engine/distributed.py``): when a process group is initialised, ``fit`` wraps the model in
DistributedDataParallel, gives each process ``batch_size / N`` sketches of every global batch,
computes the loss of the global batch (negatives mined across processes), validates on shards
and merges the scores; only rank 0 writes the training state. The result equals one process
with the same global batch up to float rounding (tests/engine/test_ddp.py), except that a last global
batch with fewer sketches than processes is left out (on FS-COCO at batch 16: one sketch per epoch);
``training.drop_last`` leaves out every incomplete last batch, the same with one process or several.
"""

from __future__ import annotations

import collections
import functools
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader
from sketchseg.progress import progress

from sketchseg.data.annotated import AnnotatedSketches
from sketchseg.data.train_set import TrainSketches, collate_train
from sketchseg.engine import distributed
from sketchseg.engine.config import TrainConfig
from sketchseg.engine.evaluate import METRIC_NAMES, evaluate_model
from sketchseg.engine.runtime import autocast, cpu_reproducible, resolve_device, seed_everything
from sketchseg.engine.state import load_training_state, resume_training, save_training_state, training_state
from sketchseg.engine.val_cache import ValidationData
from sketchseg.errors import SketchSegConfigError, SketchSegError
from sketchseg.model.checkpoint import trainable_state_dict

__all__ = ["FitResult", "NonFiniteLossError", "Selection", "TrainConfig", "fit", "load_training_state",
           "make_optimizer", "parameter_groups", "train_one_epoch", "train_step", "validate"]

logger = logging.getLogger(__name__)


class NonFiniteLossError(SketchSegError):
    """The training loss became NaN or infinite."""


@dataclass
class FitResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_metric: float
    last_state: dict[str, torch.Tensor]
    last_epoch: int
    history: pd.DataFrame
    extra: dict = field(default_factory=dict)


def _most_categories(train_set: Any) -> int:
    """The most categories one training sketch brings (the gather size without a cap)."""
    rows = getattr(train_set, "rows", None)
    if rows is None or "categories" not in rows or not len(rows):
        return 1
    return int(rows["categories"].map(len).max())


def _clone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in trainable_state_dict(model).items()}


_LOSS_KEYS = ("loss", "loss_global", "loss_category")


def parameter_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[torch.nn.Parameter] | list[dict[str, Any]]:
    """The trainable parameters of ``model``; with ``cfg.threshold_learning_rate`` the learnable
    threshold forms a second AdamW group at that rate (docs/paper-vs-code.md: at the paper's 1e-6
    an Adam step barely moves it)."""
    params = [p for p in model.parameters() if p.requires_grad]
    threshold = getattr(model, "threshold", None)
    if cfg.threshold_learning_rate is None or threshold is None:
        return params
    own = {id(p) for p in threshold.parameters() if p.requires_grad}
    rest = [p for p in params if id(p) not in own]
    mine = [p for p in params if id(p) in own]
    groups: list[dict[str, Any]] = [{"params": rest}] if rest else []
    if mine:
        groups.append({"params": mine, "lr": float(cfg.threshold_learning_rate)})
    return groups


def make_optimizer(params: list[torch.nn.Parameter] | list[dict[str, Any]],
                   cfg: TrainConfig) -> tuple[torch.optim.Optimizer, bool]:
    """AdamW over ``params``; returns ``(optimizer, skips_on_device)``: True for the fused AdamW,
    whose step can skip a non-finite batch without the host looking at it."""
    if cfg.fused_optimizer:
        try:
            return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=True), True
        except (RuntimeError, ValueError) as exc:  # a device / dtype without a fused kernel
            logger.warning("fused AdamW unavailable (%s); the loss is checked on the host every step", exc)
    return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay), False


def train_step(
    forward: Callable[..., dict],
    optimizer: torch.optim.Optimizer,
    batch: dict[str, Any],
    *,
    device: torch.device,
    precision: str,
    skips_on_device: bool,
) -> tuple[dict, torch.Tensor]:
    """One optimisation step: forward (autocast), backward, AdamW; returns ``(losses, finite)``.

    ``finite`` is a device bool tensor (the same in every process under DDP). A non-finite loss
    leaves parameters and optimiser state untouched: inside the fused step (``skips_on_device``,
    no host sync) or by skipping the step after a host check. Backward always runs, so that DDP
    sees every iteration complete.
    """
    images = batch["images"].to(device, non_blocking=True)
    with autocast(device, precision):
        out = forward(images, batch["captions"], batch["categories"], batch["prompts"])
    loss = out["loss"]
    finite = torch.isfinite(loss.detach())
    if distributed.current().enabled:
        finite = distributed.all_reduce_(finite.to(torch.int32), "min").bool()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if skips_on_device:
        optimizer.grad_scale = None  # read by the fused AdamW step (as torch.amp.GradScaler sets it)
        optimizer.found_inf = (~finite).to(torch.float32)
        try:
            optimizer.step()
        finally:
            del optimizer.grad_scale, optimizer.found_inf
    elif bool(finite):
        optimizer.step()
    else:
        optimizer.zero_grad(set_to_none=True)
    return out, finite


class _EpochStats:
    """Loss sums, finite-batch count and the first bad batch of an epoch, kept on the device."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.sums: dict[str, torch.Tensor] = {}
        self.ok = torch.zeros((), dtype=torch.long, device=device)
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.steps = 0
        self.recent_ids: collections.deque[tuple[int, list]] = collections.deque()
        self.last: dict = {}

    def add(self, out: dict, finite: torch.Tensor, sketch_ids: list, keep: int) -> None:
        for k in _LOSS_KEYS:
            if k in out:
                v = out[k].detach().float()
                v = torch.where(finite, v, torch.zeros_like(v))
                self.sums[k] = self.sums[k] + v if k in self.sums else v
        self.ok += finite.to(torch.long)
        step = torch.full((), self.steps, dtype=torch.long, device=self.device)
        self.first_bad = torch.where(~finite & (self.first_bad < 0), step, self.first_bad)
        self.recent_ids.append((self.steps, list(sketch_ids)))
        while len(self.recent_ids) > keep:
            self.recent_ids.popleft()
        self.steps += 1
        self.last = out

    def raise_if_bad(self, epoch: int) -> None:
        bad = int(self.first_bad.item())  # host sync: every sync_every steps and at the epoch end
        if bad < 0:
            return
        ids = next((ids for step, ids in self.recent_ids if step == bad), None)
        where = f"sketch ids {ids[:8]}..." if ids is not None else "sketch ids no longer known"
        raise NonFiniteLossError(
            f"non-finite training loss (NaN or inf) at epoch {epoch}, batch {bad} ({where}); the batch's update "
            "was not applied; lower training.learning_rate, check the data, or set training.nan_policy=skip "
            "to skip such batches"
        )


def _train_texts(train_set: Any) -> list[str]:
    """Every caption and prompt of a ``TrainSketches`` table (empty for other datasets)."""
    rows = getattr(train_set, "rows", None)
    if not isinstance(rows, pd.DataFrame) or "caption" not in rows:
        return []
    texts = [str(c) for c in rows["caption"]]
    if "prompts" in rows:
        for prompts in rows["prompts"]:
            if prompts is not None and not isinstance(prompts, (float, str)):
                texts.extend(str(p) for p in prompts)
    return texts


# ---------------------------------------------------------------------------------- the steps
def train_one_epoch(
    model: torch.nn.Module,
    forward: Callable[..., dict],
    optimizer: torch.optim.Optimizer | None,
    loader: DataLoader,
    *,
    epoch: int,
    n_epochs: int,
    device: torch.device,
    cfg: TrainConfig,
    skips_on_device: bool,
) -> dict[str, float]:
    """One pass over ``loader`` (the sampler and data set already set to ``epoch``): the epoch's mean
    losses (``train_*``), the learnable threshold after its last step, ``epoch_seconds`` and
    ``skipped_batches`` (non-finite losses; ``nan_policy: stop`` raises at the next check)."""
    info = distributed.current()
    model.train()
    t0 = time.perf_counter()
    stats = _EpochStats(device)
    bar = progress(loader, desc=f"epoch {epoch}/{n_epochs}", unit="batch", leave=False, enabled=info.is_main)
    for batch in bar:
        out, finite = train_step(forward, optimizer, batch, device=device, precision=cfg.precision,
                                 skips_on_device=skips_on_device)
        stats.add(out, finite, batch["sketch_id"], keep=cfg.sync_every)
        if cfg.nan_policy == "stop" and (not skips_on_device or stats.steps % cfg.sync_every == 0):
            stats.raise_if_bad(epoch)
    if cfg.nan_policy == "stop":
        stats.raise_if_bad(epoch)
    n_batches = int(stats.ok.item())
    skipped = stats.steps - n_batches
    sums = stats.sums
    if info.enabled:  # each process's losses are its share x world size: average them
        sums = {k: distributed.all_reduce_(v.clone(), "sum") / info.world_size for k, v in sums.items()}
    metrics = {f"train_{k}": float(v) / max(n_batches, 1) for k, v in sums.items()}
    learnable = getattr(model, "threshold", None)  # its value after the epoch's last step
    thr = (learnable.value.detach() if learnable is not None else stats.last.get("threshold")) if n_batches else None
    if thr is not None:
        metrics["threshold"] = float(thr)
    metrics["epoch_seconds"] = time.perf_counter() - t0
    metrics["skipped_batches"] = float(skipped)
    if skipped:
        logger.warning("epoch %d: skipped %d batches with a non-finite loss", epoch, skipped)
    return metrics


def validate(model: torch.nn.Module, val: ValidationData, *, epoch: int, device: torch.device, precision: str,
             batch_size: int, num_workers: int) -> dict[str, float]:
    """The validation metrics (``val_*``) of ``model`` now; empty without validation sketches. Under
    data parallel each process scores its shard and the per-sketch rows are merged."""
    if val.empty:
        return {}
    res = evaluate_model(model, val.dataset(), device=device, batch_size=batch_size, num_workers=num_workers,
                         precision=precision, desc=f"val epoch {epoch}")
    if not val.info.enabled:
        return res.prefixed("val")
    parts = distributed.all_gather_objects(res.per_sketch)
    return {f"val_{k}": v for k, v in distributed.merge_eval_rows(parts, METRIC_NAMES).items()}


@dataclass
class Selection:
    """The checkpoint chosen so far: the best ``selection_metric`` of epochs 1..E (epoch 0 only
    while nothing else is scored)."""

    metric: float
    epoch: int
    state: dict[str, torch.Tensor]

    def offer(self, epoch: int, metrics: dict[str, float], selection_metric: str, model: torch.nn.Module) -> None:
        """Keep ``model``'s state when this epoch's score beats the best (or replaces epoch 0)."""
        score = metrics.get(selection_metric)
        if score is not None and (score > self.metric or self.epoch == 0):
            self.metric, self.epoch, self.state = score, epoch, _clone_state(model)

    def settle(self, last_epoch: int, selection_metric: str, model: torch.nn.Module) -> None:
        """No epoch scored (no annotated validation sketches): the paper's fallback (S4.2) is the
        last checkpoint, never the untrained model of epoch 0."""
        if self.metric == -math.inf and last_epoch > 0:
            logger.warning("no epoch has a %s (no annotated validation sketches): the chosen checkpoint is the "
                           "last epoch's (%d), as the paper advises without an annotated set (S4.2)",
                           selection_metric, last_epoch)
            self.metric, self.epoch, self.state = float("nan"), int(last_epoch), _clone_state(model)


def _train_loader(train_set: TrainSketches, cfg: TrainConfig, info: distributed.DistInfo, device: torch.device,
                  generator: torch.Generator) -> tuple[DataLoader, distributed.ShardedBatchSampler]:
    sampler = distributed.ShardedBatchSampler(len(train_set), cfg.batch_size, seed=cfg.seed, rank=info.rank,
                                              world_size=info.world_size, drop_last=cfg.drop_last)
    workers = int(cfg.num_workers)
    loader = DataLoader(
        distributed.EpochItems(train_set),
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate_train,
        generator=generator,
        pin_memory=cfg.pin_memory and device.type == "cuda",
        persistent_workers=cfg.persistent_workers and workers > 0,
        prefetch_factor=cfg.prefetch_factor if workers > 0 else None,
    )
    return loader, sampler


def _prepare_forward(model: torch.nn.Module, train_set: Any, cfg: TrainConfig, info: distributed.DistInfo,
                     device: torch.device) -> Callable[..., dict]:
    """Text cache, optional compile, and (under a process group) the DDP-wrapped loss with its gather."""
    if cfg.precompute_text and hasattr(model, "precompute_text"):
        model.precompute_text(_train_texts(train_set))
    if cfg.compile and hasattr(model, "compile_encoder"):
        model.compile_encoder()
    if not info.enabled:
        return model.training_losses
    from torch.nn.parallel import DistributedDataParallel

    local_batch = cfg.batch_size // info.world_size
    ddp = DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=cfg.ddp_find_unused_parameters,
        forward_sync_buffers=False,  # constant buffers (pixel mean/std, text mask)
    )
    per_sketch = cfg.max_categories_per_sketch or _most_categories(train_set)
    gather = distributed.LossGather(info.world_size, max_captions=local_batch,
                                    max_pairs=local_batch * max(1, per_sketch))
    logger.info("data parallel: %d processes x %d sketches per step", info.world_size, local_batch)
    return functools.partial(ddp, gather=gather)


# ---------------------------------------------------------------------------------- fit
def fit(model: torch.nn.Module, train_set: TrainSketches, val_set: AnnotatedSketches | None, cfg: TrainConfig,
        **kwargs: Any) -> FitResult:
    """:func:`_fit` (its keywords) with ``cfg.num_threads`` CPU threads and, on CPU, torch's deterministic
    algorithms (``runtime.cpu_reproducible``: same seed, machine and threads -> the same bits);
    ``extra["torch_threads"]`` records the thread count."""
    device = resolve_device(cfg.device, distributed.current())
    with cpu_reproducible(device, cfg.num_threads) as threads:
        result = _fit(model, train_set, val_set, cfg, **kwargs)
    result.extra["torch_threads"] = threads
    return result


def _fit(
    model: torch.nn.Module,
    train_set: TrainSketches,
    val_set: AnnotatedSketches | None,
    cfg: TrainConfig,
    *,
    eval_batch_size: int = 16,
    eval_num_workers: int = 0,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    stop_after_epoch: int | None = None,
    lineage: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> FitResult:
    """Train ``model`` and keep the trainable state of the epoch with the best validation metric.

    Epoch 0 is the model before training (logged when ``validate_before_training``); the chosen
    checkpoint is the best of epochs 1..E (epoch 0 only when ``epochs == 0`` or ``train_mode`` is
    false; the last epoch, with a warning, when no epoch has a validation score).
    ``on_epoch_end(epoch, metrics)`` receives every logged number. With ``cfg.state_path`` the full
    state (model, optimiser, threshold, RNG states, epoch, best so far, history) is written
    atomically after every epoch (``engine/state.py``), and ``cfg.resume`` continues from it.
    ``stop_after_epoch`` ends the loop early, as an interrupted run would (used by tests).
    ``lineage`` (``state.run_lineage``) and ``run_id`` (the MLflow run) are recorded in the state.
    Under an initialised process group the loop is data parallel (see the module docstring);
    every process returns the same history and states.
    """
    info = distributed.current()
    device = resolve_device(cfg.device, info)
    seed_everything(cfg.seed)
    model.to(device)
    params = parameter_groups(model, cfg)
    if cfg.train_mode and cfg.epochs > 0 and not params:
        raise SketchSegConfigError("no trainable parameters: check model.finetune")
    optimizer, skips_on_device = make_optimizer(params, cfg) if params else (None, False)
    generator = torch.Generator().manual_seed(cfg.seed)  # the loader workers' base seed
    loader, sampler = _train_loader(train_set, cfg, info, device, generator)
    val = ValidationData(val_set, info, cache=cfg.cache_val_set, batch_size=eval_batch_size,
                         num_workers=eval_num_workers)
    scored = functools.partial(validate, model, val, device=device, precision=cfg.precision,
                               batch_size=eval_batch_size, num_workers=eval_num_workers)
    history: list[dict[str, float]] = []
    best = Selection(-math.inf, 0, _clone_state(model))
    start_epoch, skipped_total = 1, 0

    def emit(epoch: int, metrics: dict[str, float]) -> None:
        history.append({"epoch": epoch, **metrics})
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)

    if cfg.resume:
        point = resume_training(cfg.state_path, model, optimizer, generator)
        history, start_epoch, skipped_total = point.history, point.start_epoch, point.skipped_batches
        best = Selection(point.best_metric, point.best_epoch, point.best_state)
        logger.info("resumed from %s at epoch %d (best %s=%.3f at epoch %d)",
                    cfg.state_path, start_epoch, cfg.selection_metric, best.metric, best.epoch)
    elif cfg.validate_before_training or not cfg.train_mode or cfg.epochs == 0:
        m0 = scored(epoch=0)
        emit(0, m0)
        best.metric = m0.get(cfg.selection_metric, -math.inf)

    n_epochs = cfg.epochs if cfg.train_mode else 0
    forward = _prepare_forward(model, train_set, cfg, info, device) if start_epoch <= n_epochs \
        else model.training_losses
    for epoch in range(start_epoch, n_epochs + 1):
        train_set.set_epoch(epoch)
        sampler.set_epoch(epoch)
        metrics = train_one_epoch(model, forward, optimizer, loader, epoch=epoch, n_epochs=n_epochs, device=device,
                                  cfg=cfg, skips_on_device=skips_on_device)
        skipped_total += int(metrics["skipped_batches"])
        metrics.update(scored(epoch=epoch))
        emit(epoch, metrics)
        best.offer(epoch, metrics, cfg.selection_metric, model)
        logger.info(
            "epoch %d: loss %.4f, %s %.2f (best %.2f @ %d), %.1fs",
            epoch, metrics.get("train_loss", float("nan")), cfg.selection_metric,
            metrics.get(cfg.selection_metric, float("nan")), best.metric, best.epoch, metrics["epoch_seconds"],
        )
        if cfg.state_path and info.is_main:
            save_training_state(cfg.state_path, training_state(
                model_state=_clone_state(model), optimizer=optimizer, epoch=epoch, best_metric=best.metric,
                best_epoch=best.epoch, best_state=best.state, history=history, generator=generator,
                skipped_batches=skipped_total, lineage=lineage, run_id=run_id,
                clip_fingerprint=getattr(model, "clip_fingerprint", None)))
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            logger.warning("stopping after epoch %d as asked", epoch)
            break

    last_epoch = history[-1]["epoch"] if history else 0
    best.settle(last_epoch, cfg.selection_metric, model)
    return FitResult(
        best_state=best.state,
        best_epoch=best.epoch,
        best_metric=best.metric,
        last_state=_clone_state(model),
        last_epoch=last_epoch,
        history=pd.DataFrame(history),
        extra={"skipped_batches": skipped_total, "config": asdict(cfg), "world_size": info.world_size},
    )
