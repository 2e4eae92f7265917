"""Data-parallel helpers for ``engine.train.fit`` (``torchrun`` / DistributedDataParallel).

Nothing here starts processes: ``torchrun --nproc-per-node=N -m sketchseg.launch`` (or a test
with ``torch.multiprocessing``) starts them and :func:`init_from_env` joins the process group. When
no group is initialised every helper is the single-process identity, so ``fit`` has one code path.

Equivalence with one process (what tests/engine/test_ddp.py checks):

* :class:`ShardedBatchSampler` draws one permutation per epoch from ``(seed, epoch)`` and cuts it
  into GLOBAL batches of ``training.batch_size``; rank ``r`` takes ``batch[r::world]`` of every
  global batch. The union of the ranks' k-th batches is the k-th batch of a single process.
* :class:`LossGather` lets the model mine hardest negatives among the whole global batch and take
  means over its anchors (see ``SketchSegModel.training_losses``); DDP averages the gradients.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, Sampler

from sketchseg.errors import SketchSegConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the process group (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current() -> DistInfo:
    """The initialised process group's view of this process, else rank 0 of 1."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local)


def env_info() -> DistInfo:
    """What ``torchrun`` announces in RANK / WORLD_SIZE / LOCAL_RANK (rank 0 of 1 without it)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def default_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_from_env(backend: str = "auto", timeout_minutes: float = 30.0) -> DistInfo:
    """Join the process group described by torchrun's environment (a no-op for one process).

    ``backend`` "auto" = nccl with CUDA, else gloo. With nccl each process uses ``cuda:LOCAL_RANK``.
    """
    info = env_info()
    if not info.enabled or (dist.is_available() and dist.is_initialized()):
        return current()
    if not dist.is_available():
        raise SketchSegConfigError("torch.distributed is not available in this PyTorch build")
    backend = default_backend() if backend == "auto" else backend
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise SketchSegConfigError("backend nccl needs CUDA; use --backend gloo for CPU processes")
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend, timeout=dt.timedelta(minutes=timeout_minutes))
    logger.info("process group: rank %d of %d (local rank %d), backend %s", info.rank, info.world_size,
                info.local_rank, backend)
    return current()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if current().enabled:
        dist.barrier()


def all_reduce_(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (``sum`` / ``min`` / ``max``); identity without a process group."""
    if current().enabled:
        dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}[op])
    return t


def all_gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj`` in rank order (pickled; for small host-side results)."""
    info = current()
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not current().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


# ---------------------------------------------------------------------------------- sampling
class ShardedBatchSampler(Sampler[list]):
    """Shuffled batches of ``(epoch, index)`` keys for this rank, reproducible from (seed, epoch).

    Every epoch draws ``torch.randperm(n)`` from a generator seeded with ``seed + epoch`` and cuts
    it into global batches of ``global_batch`` (the last may be smaller); rank ``r`` of ``world``
    gets ``batch[r::world]``. A last global batch with fewer items than ranks is dropped (logged)
    under DDP, as a rank with nothing to do would stall the others. With ``world == 1`` this is an
    ordinary shuffled loader with ``drop_last=False``. ``drop_last`` leaves out every incomplete
    last global batch (one process and several alike: FS-COCO's 9025 = 564 x 16 + 1 would otherwise
    end each epoch with a one-sketch step, which has no holistic negative).
    """

    def __init__(self, n: int, global_batch: int, *, seed: int, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False) -> None:
        if global_batch < 1:
            raise SketchSegConfigError(f"batch size must be >= 1, got {global_batch}")
        if global_batch % world_size:
            raise SketchSegConfigError(
                f"training.batch_size={global_batch} (the global batch) must be divisible by the number of "
                f"processes ({world_size}); each process takes batch_size / processes sketches per step"
            )
        self.n, self.global_batch, self.seed = int(n), int(global_batch), int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.drop_last = bool(drop_last)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def global_batches(self) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        batches = [perm[i : i + self.global_batch] for i in range(0, self.n, self.global_batch)]
        if self.drop_last and batches and len(batches[-1]) < self.global_batch:
            batches = batches[:-1]
        elif self.world_size > 1 and batches and len(batches[-1]) < self.world_size:
            logger.warning("epoch %d: the last %d sketch(es) are left out (fewer than the %d processes)",
                           self.epoch, len(batches[-1]), self.world_size)
            batches = batches[:-1]
        return batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in self.global_batches():
            yield [(self.epoch, i) for i in batch[self.rank :: self.world_size]]

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.global_batch)
        return full + (1 if rest and not self.drop_last and (self.world_size == 1 or rest >= self.world_size) else 0)


class EpochItems(Dataset):
    """Wraps a dataset with ``set_epoch`` so that items are addressed by ``(epoch, index)``: the
    epoch travels with the key, so persistent DataLoader workers draw the right epoch's categories."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if getattr(self.dataset, "epoch", None) != epoch:
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


class Shard(Dataset):
    """Items ``rank, rank + world, ...`` of ``dataset``; other attributes (e.g. ``render_size``)
    are read from ``dataset``."""

    def __init__(self, dataset: Any, rank: int, world_size: int) -> None:
        self.dataset = dataset
        self.indices = list(range(rank, len(dataset), world_size))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[self.indices[i]]

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "indices"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


# ---------------------------------------------------------------------------------- losses
class LossGather:
    """Implements ``sketchseg.model.losses.LossGather`` on the default process group.

    Text rows (embeddings and string ids) are padded to a fixed per-process bound and gathered
    with ``all_gather`` (tensors only: no host synchronisation); the model never gathers image
    features, so no gradient crosses processes except through DDP's own all-reduce.
    """

    def __init__(self, world_size: int, max_captions: int, max_pairs: int) -> None:
        self.world_size = int(world_size)
        self.max_captions = int(max_captions)
        self.max_pairs = int(max_pairs)

    def gather_rows(self, emb: torch.Tensor, ids: torch.Tensor,
                    pad_to: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = emb.shape[0]
        if n > pad_to:
            raise ValueError(f"{n} rows to gather, more than the bound of {pad_to} per process")
        emb_p = emb.detach().new_zeros(pad_to, emb.shape[1])
        emb_p[:n] = emb.detach()
        meta = torch.zeros(2, pad_to, dtype=torch.long, device=emb.device)
        meta[0, :n] = ids
        meta[1, :n] = 1
        embs = [torch.empty_like(emb_p) for _ in range(self.world_size)]
        metas = [torch.empty_like(meta) for _ in range(self.world_size)]
        dist.all_gather(embs, emb_p)
        dist.all_gather(metas, meta)
        meta_all = torch.cat(metas, dim=1)
        return torch.cat(embs), meta_all[0], meta_all[1].bool()

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        out = t.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out


# ---------------------------------------------------------------------------------- evaluation
def merge_eval_rows(parts: Sequence[pd.DataFrame], metric_names: Sequence[str]) -> dict[str, float]:
    """Summary (percent, averaged over sketches; NaN-skipping like ``metrics.aggregate``) of the
    per-sketch tables that the processes scored on their shards."""
    frames = [p for p in parts if p is not None and len(p)]
    if not frames:
        return {k: float("nan") for k in metric_names}
    rows = pd.concat(frames, ignore_index=True).sort_values("sketch_id", kind="stable")
    out: dict[str, float] = {}
    for name in metric_names:
        values = rows[name].to_numpy(dtype=np.float64)
        out[name] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    out["n_sketches"] = float(len(rows))
    return out
