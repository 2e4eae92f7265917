"""Two training runs in one output folder: the second refuses at start naming the first; a stale
lock of a dead process is taken over; the training pipeline takes and releases it (issue #17)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sketchseg.engine.runlock import LOCK_NAME, RunLock, lock_path_for
from sketchseg.errors import SketchSegConfigError
from tests.conftest import copy_project

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture()
def holder(tmp_path):
    """Another process that holds the lock of ``tmp_path/models`` until it is killed."""
    lock = tmp_path / "models" / LOCK_NAME
    code = textwrap.dedent(f"""
        import sys, time
        from sketchseg.engine.runlock import RunLock
        RunLock({str(lock)!r}).acquire(run_id="abc123")
        print("ready", flush=True)
        time.sleep(120)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield proc, lock
    finally:
        proc.kill()
        proc.wait()


def test_a_second_run_refuses_naming_the_holder(holder):
    proc, lock = holder
    with pytest.raises(SketchSegConfigError) as err:
        RunLock(lock).acquire()
    msg = str(err.value)
    assert f"pid {proc.pid} on {socket.gethostname()}" in msg and "MLflow run abc123" in msg and "\n" not in msg
    assert json.loads(lock.read_text())["pid"] == proc.pid  # untouched


def test_a_stale_lock_is_reported_and_taken_over(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = tmp_path / LOCK_NAME
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "yesterday",
                                "mlflow_run_id": ""}))
    mine = RunLock(lock)
    with caplog.at_level(logging.WARNING, logger="sketchseg.engine.runlock"):
        mine.acquire()
    assert f"left by pid {dead.pid}" in caplog.text and "taking it over" in caplog.text
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    mine.release()
    assert not lock.exists()


def test_a_lock_of_another_host_is_never_taken_over(tmp_path):
    lock = tmp_path / LOCK_NAME
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "now"}))
    with pytest.raises(SketchSegConfigError, match="pid 1 on elsewhere"):
        RunLock(lock).acquire()


def test_lock_sits_next_to_the_training_state():
    assert lock_path_for("data/06_models/sample/training_state.pt") == Path("data/06_models/sample") / LOCK_NAME


def test_the_training_pipeline_takes_and_releases_the_lock(tmp_path, monkeypatch):
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    project = copy_project(tmp_path / "p")
    monkeypatch.chdir(project)
    bootstrap_project(project)
    lock = project / "data/06_models/sample" / LOCK_NAME
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.write_text(json.dumps({"pid": other.pid, "host": socket.gethostname(), "started": "now"}))
        with KedroSession.create(project_path=project, env="sample") as session:
            with pytest.raises(SketchSegConfigError, match=f"another training run .*pid {other.pid}"):
                session.run(pipeline_names=["train"])
    finally:
        other.kill()
        other.wait()
    lock.unlink()
    # without data the run is refused by its pre-flight, after taking the lock: the lock is released
    with KedroSession.create(project_path=project, env="sample") as session:
        with pytest.raises(Exception, match="FS-COCO not found"):
            session.run(pipeline_names=["train"])
    assert not lock.exists()
