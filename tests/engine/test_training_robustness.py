"""Training robustness: exact resume, determinism, non-finite losses (engine level, tiny model, CPU)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sketchseg.data.annotated import AnnotatedSketches
from sketchseg.data.train_set import TrainSketches
from sketchseg.engine.runtime import seed_everything
from sketchseg.engine.train import NonFiniteLossError, TrainConfig, fit, load_training_state
from sketchseg.errors import SketchSegConfigError
from sketchseg.model.config import ModelConfig
from sketchseg.model.model import build_model
from tests.conftest import train_val_tables

MODEL = dict(clip_model="sketchseg-tiny", pretrained=None, allow_random_init=True, image_size=64,
             vv_blocks=[4, 5, 6], cross_attention_layers=[4, 5, 6], category_loss_layers=[4, 5, 6], finetune="full")


@pytest.fixture(scope="module")
def tables(make_sample, nltk_data_path):
    return train_val_tables(make_sample, nltk_data_path, 6)


def _run(tables, tmp_path: Path, *, epochs=2, **overrides):
    train, val = tables
    cfg = TrainConfig(epochs=epochs, batch_size=6, learning_rate=1e-3, seed=7, device="cpu", num_workers=0,
                      state_path=str(tmp_path / "state.pt"), **{k: v for k, v in overrides.items() if k != "stop"})
    seed_everything(cfg.seed)
    model = build_model(ModelConfig.from_dict(MODEL))
    train_set = TrainSketches(train, image_size=64, max_categories=2, seed=cfg.seed)
    val_set = AnnotatedSketches(val, image_size=64, render_size=96)
    return fit(model, train_set, val_set, cfg, stop_after_epoch=overrides.get("stop"))


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_resume_after_interruption_ends_exactly_like_an_uninterrupted_run(tables, tmp_path):
    full = _run(tables, tmp_path / "full")
    # "killed" after epoch 1: only the state file written at the end of that epoch survives
    part = _run(tables, tmp_path / "part", stop=1)
    assert part.last_epoch == 1
    state = load_training_state(tmp_path / "part" / "state.pt")
    assert state["epoch"] == 1 and {"model", "optimizer", "rng", "best_state", "history"} <= set(state)
    resumed = _run(tables, tmp_path / "part", resume=True)
    pd.testing.assert_frame_equal(
        resumed.history.drop(columns="epoch_seconds"), full.history.drop(columns="epoch_seconds"), check_exact=True
    )
    assert resumed.best_epoch == full.best_epoch
    _same_state(resumed.last_state, full.last_state)
    _same_state(resumed.best_state, full.best_state)


def test_same_seed_same_metrics(tables, tmp_path):
    a = _run(tables, tmp_path / "a", epochs=1)
    b = _run(tables, tmp_path / "b", epochs=1)
    cols = [c for c in a.history.columns if c != "epoch_seconds"]
    pd.testing.assert_frame_equal(a.history[cols], b.history[cols], check_exact=True)
    _same_state(a.last_state, b.last_state)


def test_state_file_is_replaced_atomically(tables, tmp_path):
    _run(tables, tmp_path, epochs=2, validate_before_training=False)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "state.pt"]
    assert leftovers == [], leftovers
    assert load_training_state(tmp_path / "state.pt")["epoch"] == 2


def test_resume_without_state_is_a_clear_error(tables, tmp_path):
    with pytest.raises(SketchSegConfigError, match="no training state was found"):
        _run(tables, tmp_path, resume=True)


def _poison(model, bad_batches: set[int]):
    """Make the chosen training batches (0-based call index) produce a NaN loss."""
    original, calls = model.training_losses, [0]

    def poisoned(*args, **kwargs):
        out = original(*args, **kwargs)
        if calls[0] in bad_batches:
            out = dict(out, loss=out["loss"] * float("nan"))
        calls[0] += 1
        return out

    model.training_losses = poisoned
    return model


def _poisoned_fit(tables, tmp_path, policy):
    train, val = tables
    seed_everything(0)
    model = _poison(build_model(ModelConfig.from_dict(MODEL)), bad_batches={1})
    cfg = TrainConfig(epochs=1, batch_size=4, learning_rate=1e-3, device="cpu", num_workers=0, nan_policy=policy,
                      validate_before_training=False, state_path=str(tmp_path / "s.pt"))
    return fit(model, TrainSketches(train, image_size=64, max_categories=2, seed=0),
               AnnotatedSketches(val, image_size=64, render_size=96), cfg)


def test_nan_loss_stops_with_a_clear_message(tables, tmp_path):
    with pytest.raises(NonFiniteLossError, match="non-finite training loss.*nan_policy=skip"):
        _poisoned_fit(tables, tmp_path, "stop")


def test_nan_loss_skipped_and_counted_when_configured(tables, tmp_path):
    result = _poisoned_fit(tables, tmp_path, "skip")
    assert result.history.iloc[-1]["skipped_batches"] == 1
    assert result.extra["skipped_batches"] == 1
    assert all(np.isfinite(v).all() for v in (t.numpy() for t in result.last_state.values()))


@pytest.mark.parametrize(("name", "default", "users"), [
    # runs with the same seeds agree bit for bit only across processes with MKL_CBWR set (before MKL's first call)
    ("MKL_CBWR", "AUTO,STRICT", "AUTO"),
    # idle OpenMP threads sleep (before torch's OpenMP starts): same results, far faster on a shared machine
    ("OMP_WAIT_POLICY", "PASSIVE", "ACTIVE"),
])
def test_importing_sketchseg_sets_its_environment_defaults_and_keeps_the_users(name, default, users):
    import os
    import subprocess
    import sys

    code = f"import sketchseg, os; print(os.environ[{name!r}])"
    env = {k: v for k, v in os.environ.items() if k != name}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == default
    out = subprocess.run([sys.executable, "-c", code], env={**env, name: users}, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == users


def test_checkpoint_selection_keeps_the_epoch_with_the_best_val_miou(tables, tmp_path, monkeypatch):
    """Validation scripted per epoch (epoch 0 = untrained): the chosen checkpoint is epoch 2, the
    best of the trained epochs 1..4 (epoch 0 scores higher but is not a trained checkpoint), and
    its weights are the model's weights at the end of epoch 2, not the last ones."""
    import sketchseg.engine.train as train_module
    from sketchseg.engine.evaluate import EvalResult
    from sketchseg.model.checkpoint import trainable_state_dict

    scripted = iter([90.0, 10.0, 40.0, 30.0, 35.0])  # val mIoU of epochs 0, 1, 2, 3, 4
    states: list[dict[str, torch.Tensor]] = []

    def fake_evaluate(model, *args, **kwargs):
        states.append({k: v.detach().clone() for k, v in trainable_state_dict(model).items()})
        summary = {"miou": next(scripted), "pixel_acc": 50.0, "stroke_acc": 50.0, "mean_acc": 50.0, "fwiou": 50.0}
        return EvalResult(summary=summary, per_sketch=pd.DataFrame(), per_category=pd.DataFrame(), n_sketches=1)

    monkeypatch.setattr(train_module, "evaluate_model", fake_evaluate)
    result = _run(tables, tmp_path, epochs=4, cache_val_set=False)
    assert list(result.history["val_miou"]) == [90.0, 10.0, 40.0, 30.0, 35.0]
    assert (result.best_epoch, result.best_metric, result.last_epoch) == (2, 40.0, 4)
    _same_state(result.best_state, states[2])  # validated at the end of epoch 2
    assert any(not torch.equal(result.best_state[k], result.last_state[k]) for k in result.best_state)


def test_without_validation_sketches_the_last_epoch_is_chosen(tables, tmp_path, caplog):
    """No annotated validation sketch scores any epoch: the chosen checkpoint is the last epoch's
    (the paper's S4.2 fallback), with a warning, never the untrained model of epoch 0."""
    train, val = tables
    cfg = TrainConfig(epochs=2, batch_size=6, learning_rate=1e-3, seed=7, device="cpu", num_workers=0)
    seed_everything(cfg.seed)
    model = build_model(ModelConfig.from_dict(MODEL))
    untrained = {k: v.detach().clone() for k, v in model.state_dict().items()}
    train_set = TrainSketches(train, image_size=64, max_categories=2, seed=cfg.seed)
    with caplog.at_level("WARNING", logger="sketchseg.engine.train"):
        result = fit(model, train_set, AnnotatedSketches(val.head(0), image_size=64), cfg)
    assert (result.best_epoch, result.last_epoch) == (2, 2) and math.isnan(result.best_metric)
    _same_state(result.best_state, result.last_state)
    assert any(not torch.equal(result.best_state[k], untrained[k]) for k in result.best_state)
    assert "no epoch has a val_miou" in caplog.text and "last epoch's (2)" in caplog.text


@pytest.mark.parametrize("name", ["miou", "train_loss", "val_loss"])
def test_selection_metric_must_be_a_validation_metric(name):
    with pytest.raises(SketchSegConfigError, match="selection_metric must be a validation metric"):
        TrainConfig.from_dict({"selection_metric": name})
    assert TrainConfig.from_dict({"selection_metric": "val_stroke_acc"}).selection_metric == "val_stroke_acc"


def test_logged_threshold_is_the_value_after_the_epoch(tables, caplog):
    train, _ = tables
    cfg = TrainConfig(epochs=1, batch_size=6, learning_rate=1e-3, threshold_learning_rate=0.5, seed=7,
                      device="cpu", num_workers=0)
    seed_everything(cfg.seed)
    model = build_model(ModelConfig.from_dict(MODEL))
    before = float(model.threshold.value)
    train_set = TrainSketches(train, image_size=64, max_categories=2, seed=cfg.seed)
    with caplog.at_level("INFO", logger="sketchseg.progress"):  # output is no terminal under pytest
        result = fit(model, train_set, None, cfg)
    logged = float(result.history.set_index("epoch").loc[1, "threshold"])
    assert logged != before and logged == pytest.approx(float(model.threshold.value), abs=1e-7)
    n = math.ceil(len(train_set) / cfg.batch_size)  # the epoch's progress, batch by batch, in the log
    assert f"epoch 1/1: {n}/{n} batch (100%)" in caplog.text and "ETA 00:00 (done)" in caplog.text


def test_categories_per_sketch_cap_is_optional(tmp_path):
    from PIL import Image

    from sketchseg.engine.train import _most_categories

    path = tmp_path / "s.png"
    Image.new("L", (32, 32), 255).save(path)
    cats = ["tree", "car", "dog", "sun", "house"]
    table = pd.DataFrame({"sketch_id": [1, 2], "raster_path": [str(path)] * 2, "caption": ["a", "b"],
                          "categories": [cats, cats[:2]], "prompts": [[f"A sketch of {c}." for c in cats],
                                                                      ["A sketch of tree.", "A sketch of car."]]})
    every = TrainSketches(table, image_size=32, max_categories=None, seed=0)  # the paper: every category
    assert every[0]["categories"] == cats and every[0]["prompts"][-1] == "A sketch of house."
    capped = TrainSketches(table, image_size=32, max_categories=3, seed=0)[0]
    assert len(capped["categories"]) == 3 and set(capped["categories"]) <= set(cats)
    assert _most_categories(every) == 5  # the data-parallel gather is sized for the longest list
    assert TrainConfig.from_dict({}).max_categories_per_sketch is None
    for bad in (0, -1, "3", True, 2.5):
        with pytest.raises(SketchSegConfigError, match="max_categories_per_sketch"):
            TrainConfig.from_dict({"max_categories_per_sketch": bad})
