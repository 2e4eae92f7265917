"""Same seed, same machine, same thread count -> the same bits (README, "Reproducibility"; issue #24).

Two demo runs used to agree bit for bit for a few epochs and then drift apart by float rounding:
the gradient of ``patches[b_idx]`` (a sketch's patches gathered once per category) is
``index_put_(accumulate=True)``, which torch's CPU kernel runs on several threads with atomic float
adds, in an order set by thread timing. ``engine.runtime.cpu_reproducible`` (used by ``fit``, the
test scoring and the tiny CLIP's pre-training) pins the thread count and runs that kernel serially.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from sketchseg.engine.config import EvalConfig, TrainConfig
from sketchseg.engine.runtime import cpu_reproducible
from sketchseg.errors import SketchSegConfigError
from sketchseg.model.checkpoint import sort_safetensors_metadata
from tests.conftest import train_val_tables

MODEL = dict(clip_model="sketchseg-tiny", pretrained=None, allow_random_init=True, image_size=64,
             vv_blocks=[4, 5, 6], cross_attention_layers=[4, 5, 6], category_loss_layers=[4, 5, 6], finetune="full")


def _gather_gradient() -> torch.Tensor:
    """The gradient of ``x[index]`` with every index repeated 64 times: 64 x 96 x 96 float adds land on
    each row, enough for torch's multi-threaded CPU kernel (over 32768 elements) and for its
    threads to collide on the same rows."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 96, 96, generator=g, requires_grad=True)
    index = torch.arange(8).repeat_interleave(64)[torch.randperm(512, generator=g)]
    upstream = torch.randn(512, 96, 96, generator=g)
    (x[index] * upstream).sum().backward()
    return x.grad


def test_repeated_index_gradient_is_the_same_bits_every_time_on_two_threads():
    with cpu_reproducible("cpu", 1):
        serial = _gather_gradient()
    with cpu_reproducible("cpu", 2) as threads:
        assert threads == 2 and torch.get_num_threads() == 2
        grads = [_gather_gradient() for _ in range(8)]
    for grad in grads:
        assert torch.equal(grad, serial)


def test_cpu_reproducible_restores_the_threads_and_the_mode():
    before = torch.get_num_threads()
    assert not torch.are_deterministic_algorithms_enabled()
    with cpu_reproducible("cpu", 1) as threads:
        assert threads == 1 and torch.are_deterministic_algorithms_enabled()
    assert torch.get_num_threads() == before and not torch.are_deterministic_algorithms_enabled()
    with cpu_reproducible("cpu", None) as threads:  # null: torch's default, left as it is
        assert threads == before


def test_sorted_safetensors_metadata_loads_the_same(tmp_path):
    path = tmp_path / "w.safetensors"
    tensors = {"b": torch.arange(6.0).reshape(2, 3), "a": torch.ones(3, dtype=torch.int64)}
    meta = {f"key{i}": "é" * i for i in (3, 1, 2, 0)}
    save_file(tensors, path, metadata=meta)
    size = path.stat().st_size
    sort_safetensors_metadata(path)
    assert path.stat().st_size == size
    header = path.read_bytes()[8:].decode("utf-8", errors="replace")
    assert header.index('"key0"') < header.index('"key1"') < header.index('"key2"') < header.index('"key3"')
    with safe_open(path, "pt") as f:
        assert f.metadata() == meta
        assert all(torch.equal(f.get_tensor(k), v) for k, v in tensors.items())


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "two"])
def test_num_threads_must_be_a_positive_integer(bad):
    allowed = r"training.num_threads must be (a positive integer|an integer) or null"
    with pytest.raises(SketchSegConfigError, match=allowed):
        TrainConfig.from_dict({"num_threads": bad})
    with pytest.raises(SketchSegConfigError, match=allowed):
        EvalConfig.from_params({}, {"num_threads": bad})


def test_evaluation_scores_with_the_training_threads():
    assert EvalConfig.from_params({}, {"num_threads": 3}).num_threads == 3
    with pytest.raises(SketchSegConfigError, match="evaluation.num_threads is not a setting of its own"):
        EvalConfig.from_params({"num_threads": 3}, {})


# ------------------------------------------------------------------ two processes, one training each
def _train_in_a_process(data_dir: str, out: str) -> None:
    """A short sample training (2 threads, batches large enough for the multi-threaded kernel);
    writes the last weights and the history."""
    from sketchseg.data.annotated import AnnotatedSketches
    from sketchseg.data.train_set import TrainSketches
    from sketchseg.engine.runtime import seed_everything
    from sketchseg.engine.train import fit
    from sketchseg.model.config import ModelConfig
    from sketchseg.model.model import build_model

    train = pd.read_parquet(Path(data_dir) / "train.parquet")
    val = pd.read_parquet(Path(data_dir) / "val.parquet")
    cfg = TrainConfig(epochs=1, batch_size=16, learning_rate=3e-4, seed=7, device="cpu", num_threads=2,
                      num_workers=0, max_categories_per_sketch=3, validate_before_training=False)
    seed_everything(cfg.seed)
    model = build_model(ModelConfig.from_dict(MODEL))
    result = fit(model, TrainSketches(train, image_size=64, max_categories=3, seed=cfg.seed),
                 AnnotatedSketches(val, image_size=64, render_size=96), cfg, eval_batch_size=8)
    from sketchseg.engine.run import checkpoint_metadata
    from sketchseg.pipelines.datasets import SafetensorsCheckpointDataset

    meta = checkpoint_metadata(model, epoch=result.last_epoch, metric=0.0, variant="repro", kind="last",
                               torch_threads=result.extra["torch_threads"])
    SafetensorsCheckpointDataset(out).save({"state": result.last_state, "metadata": meta})  # as the pipeline saves
    result.history.drop(columns="epoch_seconds").to_csv(Path(out).with_suffix(".csv"), index=False)


@pytest.mark.slow
def test_two_processes_at_once_train_the_same_weights(make_sample, nltk_data_path, tmp_path):
    """Two trainings started together in separate processes (each with its own hash seed, competing
    for the cores, the condition under which the demo runs drifted) end with equal weights."""
    train, val = train_val_tables(make_sample, nltk_data_path, 8)
    assert len(train) > 16  # a full batch and a short one each epoch
    train.to_parquet(tmp_path / "train.parquet")
    val.to_parquet(tmp_path / "val.parquet")

    ctx = multiprocessing.get_context("spawn")
    outs = [str(tmp_path / f"run{i}.safetensors") for i in (0, 1)]
    procs = [ctx.Process(target=_train_in_a_process, args=(str(tmp_path), out)) for out in outs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0]

    a, b = load_file(outs[0]), load_file(outs[1])
    assert a.keys() == b.keys() and len(a) > 0
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} of {len(a)} tensors differ, e.g. {different[:3]}"
    assert safe_open(outs[0], "pt").metadata()["torch_threads"] == "2"
    # the same checkpoint is the same file: safetensors writes its metadata in each process's hash order
    assert Path(outs[0]).read_bytes() == Path(outs[1]).read_bytes()
    pd.testing.assert_frame_equal(pd.read_csv(Path(outs[0]).with_suffix(".csv")),
                                  pd.read_csv(Path(outs[1]).with_suffix(".csv")), check_exact=True)
