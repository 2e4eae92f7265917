"""Readable logs: plain one-line records when the console is not a terminal (rich wrapped Kedro's
lines at ~40 characters in a log file), no per-run noise, and the summary a training run ends on."""

from __future__ import annotations

import io
import json
import logging
import re

import mlflow
import pytest
from kedro.io import DataCatalog
from kedro.logging import RichHandler
from kedro_datasets.json import JSONDataset

from sketchseg import logs
from sketchseg.pipelines.datasets import SafetensorsCheckpointDataset
from sketchseg.pipelines.summary import log_run_summary

NOISE = [
    ("kedro.runner.sequential_runner", "Using synchronous mode for loading and saving data. Use the --async flag"),
    ("kedro.validation.parameter_validator", "No typed parameter requirements found, returning original parameters"),
    ("kedro_mlflow.framework.hooks.mlflow_hook", "Registering new custom resolver: 'km.random_name'"),
    ("kedro_mlflow.framework.hooks.mlflow_hook", "Mlflow run 'train' - '0123abcd' has started"),
]


@pytest.fixture()
def root_handlers():
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = saved
    root.setLevel(level)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_not_a_terminal_gives_plain_unwrapped_lines_without_noise(root_handlers, capsys):
    root = root_handlers
    root.handlers[:] = [RichHandler(rich_tracebacks=True)]
    root.setLevel(logging.INFO)
    logs.tidy_logging(io.StringIO())  # a log file, a pipe
    logs.tidy_logging(io.StringIO())  # idempotent
    (handler,) = root.handlers
    assert isinstance(handler, logs.StdoutHandler)
    long = "a message of well over forty characters that rich laid out in a narrow column " * 2
    logging.getLogger("sketchseg.test").info(long.strip())
    for name, message in NOISE:
        logging.getLogger(name).info(message)
    logging.getLogger("kedro.runner.sequential_runner").warning("Using synchronous mode: a real warning passes")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2, lines
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO    sketchseg.test: " + re.escape(long.strip()), lines[0])
    assert "WARNING" in lines[1] and "a real warning passes" in lines[1]


def test_a_terminal_keeps_the_rich_console(root_handlers):
    root = root_handlers
    rich = RichHandler(rich_tracebacks=True)
    root.handlers[:] = [rich]
    logs.tidy_logging(_Tty())
    assert root.handlers == [rich] and any(isinstance(f, logs.QuietNoise) for f in rich.filters)


def test_conf_logging_levels_silence_the_rest():
    import yaml
    from pathlib import Path

    conf = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf/logging.yml").read_text())
    for name in ("kedro.framework.project", "kedro.validation.parameter_validator",
                 "kedro_mlflow.framework.hooks.mlflow_hook"):
        assert conf["loggers"][name]["level"] == "WARNING"


def test_a_scored_run_ends_on_its_summary(tmp_path, monkeypatch, caplog):
    """Scores, the checkpoint the catalog names (wherever it is), the MLflow run, the next commands."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "test_metrics.json").write_text(json.dumps(
        {"test_miou": 45.641, "test_pixel_acc": 65.88, "test_stroke_acc": 63.19, "n_test_sketches": 40,
         "checkpoint": "best", "checkpoint_epoch": 8}))
    catalog = DataCatalog({
        "test_metrics": JSONDataset(filepath=str(tmp_path / "test_metrics.json")),
        "best_checkpoint": SafetensorsCheckpointDataset("data/06_models/sample/ours/best.safetensors"),
    })
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        experiment_id = mlflow.create_experiment("sketchseg-sample")
        with mlflow.start_run(experiment_id=experiment_id, run_name="ours-sample") as run:
            run_id = run.info.run_id
        with caplog.at_level(logging.INFO, logger="sketchseg.pipelines.summary"):
            lines = log_run_summary(catalog, run_id)
    finally:
        mlflow.set_tracking_uri(previous)
    assert lines == [r.getMessage() for r in caplog.records if r.name == "sketchseg.pipelines.summary"]
    assert lines[0] == "test set (40 sketches): mIoU 45.64, Acc@P 65.88, Acc@S 63.19 with the best checkpoint (epoch 8)"
    assert lines[1] == "checkpoint: data/06_models/sample/ours/best.safetensors"
    assert lines[2].startswith(f"MLflow run {run_id} (ours-sample) in experiment 'sketchseg-sample', store sqlite:///")
    assert lines[3] == ("next: mlflow ui --backend-store-uri sqlite:///mlflow.db, then open http://127.0.0.1:5000/#/"
                        f"experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning")
    assert lines[4].startswith("next: sketchseg app --checkpoint data/06_models/sample/ours/best.safetensors")
