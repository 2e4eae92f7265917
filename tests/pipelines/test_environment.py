"""The run's configuration environment: an unknown --env is named; error hints carry the env."""

from __future__ import annotations

import re

import pytest
from kedro.io.core import DatasetError

from sketchseg.errors import SketchSegConfigError, SketchSegDataError
from sketchseg.pipelines import environment
from sketchseg.pipelines.datasets import SafetensorsCheckpointDataset


def test_unknown_environment_names_the_ones_that_exist(tmp_path):
    for env in ("base", "sample"):
        (tmp_path / env).mkdir()
    environment.check_environment(tmp_path, "sample")
    environment.check_environment(tmp_path, None)
    environment.check_environment(tmp_path, "local")  # the default env may be missing (gitignored)
    with pytest.raises(SketchSegConfigError, match=r"environment 'smaple' does not exist .*environments are: base, sample$"):
        environment.check_environment(tmp_path, "smaple")


@pytest.mark.parametrize(("env", "command"), [(None, "kedro run --pipelines=train"),
                                              ("local", "kedro run --pipelines=train"),
                                              ("sample", "kedro run --pipelines=train --env=sample")])
def test_run_command_names_a_non_default_env(env, command):
    environment.set_run_env(env)
    try:
        assert environment.run_command("train") == command
    finally:
        environment.set_run_env(None)


def test_checkpoint_dataset_missing_or_unreadable_file(tmp_path):
    missing = SafetensorsCheckpointDataset(str(tmp_path / "best.safetensors"))
    environment.set_run_env("sample")
    try:
        with pytest.raises(DatasetError) as info:  # Kedro wraps what a dataset raises
            missing.load()
    finally:
        environment.set_run_env(None)
    assert isinstance(info.value.__cause__, SketchSegDataError)
    assert re.fullmatch(r"no trained checkpoint yet: .*best.safetensors does not exist; "
                        r"run `kedro run --pipelines=train --env=sample` first", str(info.value.__cause__))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(DatasetError) as info:
        SafetensorsCheckpointDataset(str(bad)).load()
    assert isinstance(info.value.__cause__, SketchSegDataError)
    assert "bad.safetensors is not a readable safetensors checkpoint" in str(info.value.__cause__)
