"""The project's ``kedro run`` / ``python -m sketchseg`` as a user meets them (real processes in a
copied project): one-line errors, the verbose switch, no dependency warning noise, honest MLflow tags.
The cases fail at once (before any training), so each process takes seconds."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from sketchseg import hooks
from sketchseg.cli import missing_input, user_error
from sketchseg.errors import SketchSegDataError
from sketchseg.experiments.project import kedro_subprocess_env

KEDRO = Path(sys.executable).with_name("kedro")
NOISE = ("Traceback", "╭", "No nodes ran", "register_new_resolver", "Add type hints")


def run_cli(project: Path, *args: str, verbose: bool = False, module: bool = False) -> subprocess.CompletedProcess:
    env = kedro_subprocess_env(offline=True)
    env.pop("SKETCHSEG_VERBOSE", None)
    if verbose:
        env["SKETCHSEG_VERBOSE"] = "1"
    cmd = [sys.executable, "-m", "sketchseg", *args] if module else [str(KEDRO), "run", *args]
    return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300)


def the_error_line(proc: subprocess.CompletedProcess) -> str:
    """The one ``Error:`` line of a failed run, with no traceback, rerun advice nor warning noise."""
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, proc.stderr
    output = proc.stdout + proc.stderr
    assert not [n for n in NOISE if n in output], output[-5000:]
    return lines[0]


def test_report_before_training_says_to_train_first(kedro_project):
    proc = run_cli(kedro_project, "--pipelines=report", "--env=sample")
    line = the_error_line(proc)
    assert "no trained checkpoint yet" in line and "best.safetensors does not exist" in line
    assert "run `kedro run --pipelines=train --env=sample` first" in line
    assert "traceback in info.log" in line and "SKETCHSEG_VERBOSE=1" in line
    log = (kedro_project / "info.log").read_text(encoding="utf-8")
    assert "Traceback" in log and "SketchSegDataError: no trained checkpoint yet" in log
    # refused by the run's pre-flight, before kedro-mlflow opens its run: no FAILED run left behind
    client = mlflow.MlflowClient(f"sqlite:///{kedro_project / 'mlflow.db'}")
    assert [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])] == []


def test_unknown_environment_is_named_with_the_ones_that_exist(kedro_project):
    line = the_error_line(run_cli(kedro_project, "--pipelines=report", "--env=smaple", module=True))
    assert "configuration environment 'smaple' does not exist" in line
    assert "the environments are: base, local, sample" in line
    assert "MLflow" not in line and "maintenance" not in line


def test_verbose_switch_shows_the_traceback(kedro_project):
    proc = run_cli(kedro_project, "--pipelines=report", "--env=smaple", verbose=True)
    assert proc.returncode == 1
    output = proc.stdout + proc.stderr
    assert "Traceback" in output and "SketchSegConfigError" in output and "'smaple' does not exist" in output


@pytest.mark.slow
def test_missing_data_is_one_line(kedro_project):
    line = the_error_line(run_cli(kedro_project, "--pipelines=train"))
    assert "FS-COCO not found: expected at data/01_raw/fscoco" in line


def test_a_misspelt_pipeline_is_one_line_with_the_closest_name(kedro_project):
    """It printed 112 lines with two tracebacks."""
    proc = run_cli(kedro_project, "--pipelines=trian", "--env=sample")
    line = the_error_line(proc)
    assert line.startswith("Error: no pipeline named 'trian'; did you mean train? (the pipelines are: data, ")
    # not a terminal: plain one-line records (not rich's ~40-character column), without per-run noise
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (INFO|WARNING) ", out) for out in proc.stdout.splitlines())
    assert "Registering new custom resolver" not in proc.stdout and "logging configuration" not in proc.stdout


def test_missing_catalog_input_names_the_pipeline_that_makes_it(kedro_project):
    line = the_error_line(run_cli(kedro_project, "--pipelines=pretrain_sample", "--env=sample"))
    assert line.startswith("Error: input 'sample_summary' not found: data/01_raw/sample_summary.json does not "
                           "exist; it is made by `kedro run --pipelines=make_sample --env=sample`: run that first")


def test_missing_input_reads_kedros_wrapped_file_not_found():
    from kedro.io import DatasetError

    def kedro_load_error(path: str) -> DatasetError:  # as DataCatalog.load wraps a dataset's failed load
        try:
            try:
                try:
                    raise FileNotFoundError(2, "No such file or directory", path)
                except FileNotFoundError as exc:
                    raise DatasetError(f"Failed while loading data from dataset JSONDataset(filepath={path}).\n{exc}") \
                        from exc
            except DatasetError as exc:
                raise DatasetError(f"sample_summary: {exc}") from exc
        except DatasetError as outer:
            return outer

    err = missing_input(kedro_load_error("/nowhere/summary.json"), "sample", producers=lambda name: ["make_sample"])
    assert str(err) == ("input 'sample_summary' not found: /nowhere/summary.json does not exist; it is made by "
                        "`kedro run --pipelines=make_sample --env=sample`: run that first")
    err = missing_input(kedro_load_error("/nowhere/summary.json"), None, producers=lambda name: [])
    assert str(err) == ("input 'sample_summary' not found: /nowhere/summary.json does not exist; check the path of "
                        "the catalog entry 'sample_summary' in conf/")
    assert missing_input(FileNotFoundError(2, "No such file", "/x")) is None  # not a catalog load
    assert missing_input(DatasetError("sample_summary: Failed while loading data from dataset X")) is None


def test_user_error_is_found_behind_kedro_wrappers():
    try:
        try:
            raise SketchSegDataError("no data")
        except SketchSegDataError as exc:
            raise RuntimeError("Failed while loading data from dataset X.\nno data") from exc
    except RuntimeError as wrapped:
        assert str(user_error(wrapped)) == "no data"
    assert user_error(ValueError("a bug")) is None


def test_mlflow_tags_name_the_runner_and_the_command():
    class SequentialRunner:
        pass

    assert hooks.runner_name("<kedro.runner.sequential_runner.SequentialRunner object at 0x7f3a2c1d0>") \
        == "SequentialRunner"
    assert hooks.runner_name(SequentialRunner()) == hooks.runner_name(SequentialRunner) == "SequentialRunner"
    run_params = {"pipeline_names": ["train"], "env": "sample", "tags": (), "node_names": (),
                  "runtime_params": {"training": {"epochs": 2}, "seed": 1}}
    assert hooks.kedro_command(run_params) == "kedro run --pipelines=train --env=sample --params=training.epochs=2,seed=1"
    hooks.remember_command("kedro run --pipelines train")
    try:
        assert hooks.kedro_command(run_params) == "kedro run --pipelines train"
    finally:
        hooks.remember_command(None)


def test_dependency_warnings_are_quiet_for_users_and_seen_by_tests():
    import logging
    import warnings

    from sketchseg import settings

    code = ("import warnings, sketchseg.settings\n"
            "warnings.warn_explicit('register_new_resolver() is deprecated and will be removed', UserWarning,"
            " 'omegaconf_config.py', 1, module='kedro.config.omegaconf_config')\n"
            "warnings.warn_explicit('something a user can act on', UserWarning, 'omegaconf_config.py', 2,"
            " module='kedro.config.omegaconf_config')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=kedro_subprocess_env())
    assert "register_new_resolver" not in proc.stderr and "something a user can act on" in proc.stderr
    # MLflow's warning reaches Kedro's logging as a py.warnings record, under simplefilter("once")
    text = ("/venv/mlflow/pyfunc/utils/data_validation.py:187: UserWarning: \x1b[33mAdd type hints to the "
            "`predict` method to enable data validation")
    keep = settings.DependencyWarningFilter().filter
    assert not keep(logging.LogRecord("py.warnings", logging.WARNING, "", 0, "%s", (text,), None))
    assert keep(logging.LogRecord("py.warnings", logging.WARNING, "", 0, "%s", (text.replace("mlflow", "x"),), None))
    with pytest.warns(UserWarning, match="register_new_resolver"):  # tests still see them
        warnings.warn_explicit("register_new_resolver() is deprecated", UserWarning, "omegaconf_config.py", 1,
                               module="kedro.config.omegaconf_config")


@pytest.mark.parametrize("make, expected", [
    (lambda tmp: NotADirectoryError(20, "Not a directory", str(tmp / "afile" / "state.pt")),
     "cannot write {tmp}/afile/state.pt: {tmp}/afile is a file where a folder is needed"),
    (lambda tmp: FileExistsError(17, "File exists", str(tmp / "afile")), "{tmp}/afile is a file where a folder is needed"),
    (lambda tmp: OSError(28, "No space left on device", str(tmp / "best.safetensors")),
     "cannot write {tmp}/best.safetensors: No space left on device; free space or choose another folder"),
    (lambda tmp: PermissionError(13, "Permission denied", str(tmp / "x.csv")), "cannot write {tmp}/x.csv: permission denied"),
], ids=["state-path-under-a-file", "folder-is-a-file", "disk-full", "permission"])
def test_storage_errors_are_one_line_naming_the_path(tmp_path, make, expected):
    """#27: a state path under a file, data/08_reporting a file, a full disk: one line each."""
    from sketchseg.cli import storage_error

    (tmp_path / "afile").write_text("x")
    try:  # as Kedro wraps a node's or a dataset's error
        try:
            raise make(tmp_path)
        except OSError as inner:
            raise RuntimeError("Failed while saving data to dataset") from inner
    except RuntimeError as outer:
        found = storage_error(outer)
    assert found is not None and expected.format(tmp=tmp_path) in str(found)
    assert storage_error(ValueError("a bug")) is None
    assert storage_error(FileNotFoundError(2, "No such file", "x")) is None  # a missing input: missing_input's


def test_a_corrupt_mlflow_database_is_one_line(kedro_project):
    (kedro_project / "mlflow.db").write_text("not a database")
    line = the_error_line(run_cli(kedro_project, "--pipelines=make_sample", "--env=sample"))
    assert "the MLflow tracking database cannot be read (file is not a database)" in line
    assert "move mlflow.db aside" in line


@pytest.mark.parametrize("params, expected", [
    ("training.epochs=1.5", "training.epochs must be an integer, got 1.5"),
    ("training.learning_rate=-1", "training.learning_rate must be a positive number, got -1"),
    ("training.precision=fp8", "training.precision must be one of bf16, fp32, got 'fp8'"),
    ("training.epochs.x=1", "training.epochs must be an integer, got {'x': 1}"),
    ("data.max_rejection_rate=abc", "data.max_rejection_rate must be a number in [0, 1]"),
    ("training.device=cuda", "device 'cuda': CUDA is not available on this machine; use cpu or auto"),
], ids=["float-epochs", "negative-lr", "fp8", "sub-key", "str-rate", "no-cuda"])
def test_bad_values_are_refused_before_the_run_in_one_line(kedro_project, params, expected):
    """#27: these passed the key check and failed later with a traceback (a misleading 'fused AdamW
    unavailable' warning for the negative rate), or were accepted silently (fp8)."""
    if "cuda" in params:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    line = the_error_line(run_cli(kedro_project, "--pipelines=train", "--env=sample", "--params", params))
    assert expected in line, line
    assert not list(kedro_project.glob("mlruns")) and "fused" not in line
