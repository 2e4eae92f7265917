"""Device, precision and seeding helpers shared by training and evaluation (the RNG states of a
resumed run are in ``engine/state.py``)."""

from __future__ import annotations

import contextlib
import logging
import os
import random
from typing import TYPE_CHECKING

import numpy as np
import torch

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
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"training.device={name!r} but CUDA is not available on this machine")
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
