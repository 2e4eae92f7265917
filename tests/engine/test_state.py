"""engine/state.py (RNG states, atomic write, resume) and the one resolve_device."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from sketchseg.engine.distributed import DistInfo
from sketchseg.engine.runtime import resolve_device
from sketchseg.engine.state import (
    load_training_state,
    portable_rng_state,
    restore_portable_rng_state,
    resume_training,
    save_training_state,
)
from sketchseg.errors import SketchSegConfigError


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_portable_rng_state_survives_a_weights_only_round_trip(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    _draws()
    save_training_state(tmp_path / "sub" / "state.pt", {"rng": portable_rng_state()})
    expected = _draws()
    _draws()
    restore_portable_rng_state(load_training_state(tmp_path / "sub" / "state.pt")["rng"])
    assert _draws() == expected
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["state.pt"]  # no temporary file left


def test_resume_needs_a_state_file(tmp_path):
    model = torch.nn.Linear(2, 2)
    with pytest.raises(SketchSegConfigError, match="no training state was found"):
        resume_training(str(tmp_path / "missing.pt"), model, None, torch.Generator())
    with pytest.raises(SketchSegConfigError, match="no training state was found"):
        resume_training(None, model, None, torch.Generator())


def test_one_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cpu", DistInfo(rank=1, world_size=2, local_rank=1)) == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(SketchSegConfigError, match="CUDA is not available on this machine; use cpu or auto"):
            resolve_device("cuda:0", DistInfo())
    with pytest.raises(SketchSegConfigError, match="device must be auto, cpu, cuda or cuda:<index>, got 'banana'"):
        resolve_device("banana")
