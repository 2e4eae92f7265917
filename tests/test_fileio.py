"""Files written atomically (through a temporary file) get the mode ``open()`` gives: 0666 & ~umask."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from sketchseg.model import fileio


@pytest.fixture()
def umask():
    """Set the process umask for a test; restored afterwards."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield lambda mask: os.umask(mask)
    os.umask(saved)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_mkstemp_gives_the_mode_of_open(tmp_path, umask, mask, expected):
    umask(mask)
    assert fileio.current_umask() == mask
    fd, tmp = fileio.mkstemp(dir=tmp_path, prefix="x.", suffix=".tmp")
    os.close(fd)
    with open(tmp_path / "plain", "w"):
        pass
    assert _mode(tmp) == expected == _mode(tmp_path / "plain")


def test_every_atomic_writer_leaves_a_readable_file(tmp_path, umask, backbone):
    """The checkpoint, the safetensors dataset (converted weights), the training state and the run
    lock: 0644 under the usual umask 022, not tempfile's 0600."""
    from sketchseg.engine.runlock import RunLock
    from sketchseg.engine.state import save_training_state
    from sketchseg.model.checkpoint import checkpoint_metadata, save_checkpoint, trainable_state_dict
    from sketchseg.pipelines.datasets import SafetensorsCheckpointDataset, SafetensorsWeightsDataset
    from tests.tiny_model import build_tiny, tiny_cfg

    umask(0o022)
    model = build_tiny(backbone, tiny_cfg())
    ckpt = save_checkpoint(tmp_path / "best.safetensors", model)
    SafetensorsWeightsDataset(str(tmp_path / "ds.safetensors")).save({"state": {"w": torch.ones(2)}})
    SafetensorsCheckpointDataset(str(tmp_path / "pipeline.safetensors")).save(
        {"state": trainable_state_dict(model), "metadata": checkpoint_metadata(model, {"kind": "best"})})
    save_training_state(tmp_path / "state.pt", {"epoch": 1})
    lock = RunLock(tmp_path / "train.lock")
    lock.acquire()
    try:
        lock.update(mlflow_run_id="abc")
        modes = {p.name: _mode(p) for p in (ckpt, tmp_path / "ds.safetensors", tmp_path / "pipeline.safetensors",
                                            tmp_path / "state.pt",
                                            tmp_path / "train.lock")}
    finally:
        lock.release()
    assert modes == dict.fromkeys(modes, 0o644)
