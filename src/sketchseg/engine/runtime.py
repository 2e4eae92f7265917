"""Device, precision, CPU-thread and seeding helpers shared by training and evaluation (the RNG
states of a resumed run are in ``engine/state.py``)."""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch

from sketchseg.errors import SketchSegConfigError

if TYPE_CHECKING:
    from sketchseg.engine.distributed import DistInfo

logger = logging.getLogger(__name__)


def resolve_device(name: str = "auto", info: DistInfo | None = None) -> torch.device:
    """The device ``training.device`` names: ``auto`` picks CUDA when available, else CPU.

    Under data parallel (``info.enabled``) every CUDA process uses ``cuda:LOCAL_RANK``, whatever
    index ``name`` gives (a warning says so).
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise SketchSegConfigError(f"device must be auto, cpu, cuda or cuda:<index>, got {name!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SketchSegConfigError(f"device {name!r}: CUDA is not available on this machine; use cpu or auto")
        if info is not None and info.enabled:
            if device.index is not None and device.index != info.local_rank:
                logger.warning("training.device=%s ignored under DDP: rank %d uses cuda:%d", name, info.rank,
                               info.local_rank)
            device = torch.device("cuda", info.local_rank)
    return device


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CUDA when asked for; a no-op context on CPU (which runs fp32)."""
    if device.type == "cuda" and precision == "bf16":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


@contextlib.contextmanager
def cpu_reproducible(device: torch.device | str, num_threads: int | None) -> Iterator[int]:
    """Within the block: torch's CPU threads pinned to ``num_threads`` (``None``: as they are, torch's
    default being the cores this process may use) and, on CPU, torch's deterministic algorithms;
    both restored afterwards. Yields the number of CPU threads in use.

    Same seed, same machine, same thread count -> the same bits (README, "Reproducibility"). The
    thread count decides how reductions are split, so it is part of the result. The deterministic
    algorithms matter for backward passes: ``x[index]`` with a repeated index (a sketch's patches
    gathered once per category) has ``index_put_(accumulate=True)`` as its gradient, which torch's
    CPU kernel runs on several threads with atomic float adds, in an order set by thread timing;
    two runs drifted apart by float rounding after a few epochs, sooner when other processes
    competed for the cores. Deterministic mode runs that kernel serially. On CUDA nothing is
    switched (``warn_only`` would still slow some kernels; GPU runs are not bit-reproducible).
    """
    device = torch.device(device)
    previous_threads = torch.get_num_threads()
    previous_mode = (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled())
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield torch.get_num_threads()
    finally:
        torch.use_deterministic_algorithms(previous_mode[0], warn_only=previous_mode[1])
        torch.set_num_threads(previous_threads)
