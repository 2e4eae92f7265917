"""engine/config.py: one default per key, equal to conf/base; unknown keys refused; evaluation's
device / precision / num_threads taken from the training section in one place."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from sketchseg.engine.config import EvalConfig, TrainConfig
from sketchseg.errors import SketchSegConfigError, SketchSegDataError

CONF = Path(__file__).resolve().parents[2] / "conf" / "base" / "parameters_training.yml"


def _defaults(cls: type) -> dict:
    return {f.name: f.default for f in dataclasses.fields(cls)}


def test_eval_config_defaults_are_conf_base():
    conf = yaml.safe_load(CONF.read_text(encoding="utf-8"))["evaluation"]
    defaults = _defaults(EvalConfig)
    assert {k: defaults[k] for k in conf} == conf
    assert set(defaults) - set(conf) == {"device", "precision", "num_threads"}  # from the training section
    assert EvalConfig.from_dict(conf) == EvalConfig()


def test_train_config_defaults_are_conf_base():
    conf = yaml.safe_load(CONF.read_text(encoding="utf-8"))["training"]
    defaults = _defaults(TrainConfig)
    assert set(conf) == set(defaults)
    # the one exception: without a path no state is written (conf/base names one for real runs)
    assert defaults["state_path"] is None and conf["state_path"]
    assert {k: v for k, v in defaults.items() if k != "state_path"} == {k: v for k, v in conf.items()
                                                                     if k != "state_path"}


def test_eval_config_refuses_unknown_and_bad_values():
    with pytest.raises(SketchSegConfigError, match=r"unknown evaluation parameters \['render_sise'\]"):
        EvalConfig.from_dict({"render_sise": 256})
    with pytest.raises(SketchSegConfigError, match="evaluation.checkpoint must be one of"):
        EvalConfig.from_dict({"checkpoint": "optimal"})
    with pytest.raises(SketchSegConfigError, match="evaluation.overlap_rule must be one of"):
        EvalConfig.from_dict({"overlap_rule": "majority"})
    with pytest.raises(SketchSegConfigError, match="batch_size"):
        EvalConfig.from_dict({"batch_size": 0})
    with pytest.raises(SketchSegConfigError, match="unknown training parameters"):
        TrainConfig.from_dict({"epoch": 3})


def test_evaluation_runs_on_the_training_device_and_precision():
    ecfg = EvalConfig.from_params({"batch_size": 4}, {"device": "cpu", "precision": "fp32", "epochs": 3})
    assert (ecfg.device, ecfg.precision, ecfg.batch_size, ecfg.num_workers) == ("cpu", "fp32", 4, 2)
    assert EvalConfig.from_params({}, {}) == EvalConfig()
    with pytest.raises(SketchSegConfigError, match="evaluation.device is not a setting of its own"):
        EvalConfig.from_params({"device": "cuda"}, {"device": "cpu"})


def test_annotated_set_renders_as_the_eval_config_says(tmp_path):
    from sketchseg.engine.evaluate import annotated_set

    seg = tmp_path / "seg" / "test"
    seg.mkdir(parents=True)
    (seg / "all_classes.json").write_text(json.dumps(["blank_pixel", "zebra", "apple"]))
    vec = tmp_path / "a.npy"
    # two crossing strokes of two categories: the order of all_classes.json decides the crossing
    np.save(vec, np.array([[32.0, 128.0, 0.0], [224.0, 128.0, 1.0], [128.0, 32.0, 0.0], [128.0, 224.0, 1.0]]))
    table = pd.DataFrame([{"sketch_id": 1, "split": "test", "vector_path": str(vec),
                           "labels_json": json.dumps(["apple", "zebra"])}])
    data = {"fscoco_seg_root": str(tmp_path / "seg")}
    lowest = annotated_set(table, "test", 16, EvalConfig(render_size=64, overlap_rule="lowest_class_index"), data)
    assert (lowest.render_size, lowest.overlap_rule, lowest.empty_strokes) == (64, "lowest_class_index", "wrong")
    item = lowest[0]
    assert item.categories == ["zebra", "apple"] and item.gt.shape == (64, 64)
    assert item.categories[item.gt[32, 32]] == "zebra"
    most = annotated_set(table, "test", 16, EvalConfig(render_size=64, empty_strokes="skip"), data)
    assert (most.overlap_rule, most.empty_strokes) == ("most_strokes", "skip")  # the protocol's default rule
    with pytest.raises(SketchSegDataError, match="outside data.fscoco_root"):
        annotated_set(table.assign(raster_path="/elsewhere/1.jpg"), "test", 16, EvalConfig(),
                      {**data, "fscoco_root": str(tmp_path)})


def test_a_number_that_is_no_number_is_named():
    with pytest.raises(SketchSegConfigError, match=r"training.epochs must be an integer, got 'ten'"):
        TrainConfig.from_dict({"epochs": "ten"})
    with pytest.raises(SketchSegConfigError, match=r"evaluation.render_size must be an integer, got 'big'"):
        EvalConfig.from_dict({"render_size": "big"})
    # YAML reads 1e-5 (no dot) as a string: it stays accepted, as before
    assert TrainConfig.from_dict({"learning_rate": "1e-5", "epochs": 3}).epochs == 3


@pytest.mark.parametrize("key, value, message", [
    ("epochs", 1.5, "training.epochs must be an integer, got 1.5"),
    ("seed", True, "training.seed must be an integer, got True"),
    ("max_val_sketches", "abc", "training.max_val_sketches must be an integer or null, got 'abc'"),
    ("epochs", {"x": 1}, "training.epochs must be an integer, got {'x': 1}"),
    ("learning_rate", -1, "training.learning_rate must be a positive number, got -1"),
    ("learning_rate", "abc", "training.learning_rate must be a number, got 'abc'"),
    ("precision", "fp8", "training.precision must be one of bf16, fp32, got 'fp8'"),
    ("device", "banana", "training.device must be auto, cpu, cuda or cuda:<index>, got 'banana'"),
    ("resume", "yes", "training.resume must be true or false, got 'yes'"),
], ids=["float-epochs", "bool-seed", "str-cap", "sub-key", "negative-lr", "str-lr", "fp8", "banana", "str-bool"])
def test_bad_training_values_are_one_line_naming_key_value_and_what_is_allowed(key, value, message):
    """#27: values that passed the key check failed later with a traceback (or silently)."""
    with pytest.raises(SketchSegConfigError) as err:
        TrainConfig.from_dict({key: value})
    assert str(err.value) == message


def test_yaml_spellings_that_are_numbers_still_pass():
    cfg = TrainConfig.from_dict({"learning_rate": "1e-6", "epochs": 3, "weight_decay": 0, "max_val_sketches": None})
    assert cfg.epochs == 3 and cfg.learning_rate == "1e-6"
