"""A real MLflow tracking server (a child process on 127.0.0.1) that dies in the middle of a
training run: the run goes on with its local checkpoints and results, one warning says that
tracking stopped, and the next run fails at once naming the server."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import requests

from sketchseg import run_guard
from sketchseg.errors import SketchSegConfigError
from tests.pipelines.kedro_utils import run

START_TIMEOUT_S = 180


class Server:
    def __init__(self, root: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.uri = f"http://127.0.0.1:{port}"
        self.db = root / "mlflow.db"
        self.log = root / "server.log"
        mlflow_exe = Path(sys.executable).parent / "mlflow"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [str(mlflow_exe), "server", "--backend-store-uri", f"sqlite:///{self.db}", "--host", "127.0.0.1",
                 "--port", str(port), "--workers", "1"],
                cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.proc.poll() is None, f"mlflow server exited: {self.log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"mlflow server did not start: {self.log.read_text()[-2000:]}"
            try:
                if requests.get(f"{self.uri}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def metric_steps(self, key: str) -> list[int]:
        """Steps of ``key`` the server stored (read from its database: the server may be gone)."""
        if not self.db.exists():
            return []
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5) as con:
            try:
                return sorted(s for (s,) in con.execute("select step from metrics where key = ?", (key,)))
            except sqlite3.OperationalError:  # tables not there yet / locked
                return []


@pytest.fixture()
def mlflow_server(tmp_path):
    root = tmp_path / "server"
    root.mkdir()
    server = Server(root)
    yield server
    server.kill()


class Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tracking_server_lost_mid_run_costs_only_the_tracking(kedro_project, mlflow_server, monkeypatch):
    (kedro_project / "conf/local/mlflow.yml").write_text(f"server:\n  mlflow_tracking_uri: {mlflow_server.uri}\n")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for key in run_guard.HTTP_DEFAULTS:  # the project's defaults, not a caller's
        monkeypatch.delenv(key, raising=False)
    run(kedro_project, "make_sample")  # tracked on the live server
    client = mlflow.MlflowClient(tracking_uri=mlflow_server.uri)
    experiment = client.get_experiment_by_name("sketchseg-sample")
    assert [r.info.status for r in client.search_runs([experiment.experiment_id])] == ["FINISHED"]

    killed = threading.Event()

    def kill_after_first_validation() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not mlflow_server.metric_steps("val_miou"):
            time.sleep(0.2)
        mlflow_server.kill()
        killed.set()

    watcher = threading.Thread(target=kill_after_first_validation, daemon=True)
    messages = Messages()
    logging.getLogger("sketchseg").addHandler(messages)
    watcher.start()
    try:
        run(kedro_project, "train", params={"training.epochs": 3})
    finally:
        logging.getLogger("sketchseg").removeHandler(messages)
        watcher.join(timeout=60)
    assert killed.is_set()
    assert mlflow_server.metric_steps("val_miou")[-1] < 3  # the server died before the last epoch
    # the training went on: every epoch, the checkpoints, the training state and the test scores are local
    history = pd.read_csv(kedro_project / "data/07_model_output/sample/ours-sample/training_history.csv")
    assert history["epoch"].tolist() == [0, 1, 2, 3]
    for path in ("data/06_models/sample/ours-sample/best.safetensors",
                 "data/06_models/sample/ours-sample/training_state.pt",
                 "data/08_reporting/sample/ours-sample/test_metrics.json"):
        assert (kedro_project / path).stat().st_size > 0, path
    stopped = [m for m in messages.lines if m.startswith("MLflow tracking stopped")]
    assert len(stopped) == 1, messages.lines

    # the server is gone: the next run fails at once, in one line naming it
    t0 = time.monotonic()
    with pytest.raises(SketchSegConfigError, match=f"MLflow tracking server {mlflow_server.uri} is unreachable"):
        run(kedro_project, "make_sample")
    assert time.monotonic() - t0 < 30
