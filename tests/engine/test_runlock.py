"""Two training runs in one output folder: the second refuses at start naming the first; a stale
lock of a dead process is taken over; the training pipeline takes and releases it in the variant's
folder (issues #17, #27); a run refuses to overwrite another variant's checkpoint (issue #24)."""

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
from sketchseg.pipelines.outputs import lock_folders
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


def test_a_lock_whose_pid_was_reused_is_taken_over(holder, caplog):
    """The holder's pid is alive but belongs to a later process (the lock's start time differs)."""
    proc, lock = holder
    info = json.loads(lock.read_text())
    assert info["pid_start"]  # recorded at acquire
    told: list[dict] = []
    lock.write_text(json.dumps({**info, "pid_start": str(int(info["pid_start"]) - 1)}))  # "an earlier process"
    mine = RunLock(lock, on_stale=told.append)
    with caplog.at_level(logging.WARNING, logger="sketchseg.engine.runlock"):
        mine.acquire()
    assert f"left by pid {proc.pid}" in caplog.text and proc.poll() is None  # still alive: a reused pid
    assert [t["mlflow_run_id"] for t in told] == ["abc123"]
    mine.release()


def test_a_live_holder_with_its_own_start_time_is_honoured(holder):
    proc, lock = holder
    told: list[dict] = []
    with pytest.raises(SketchSegConfigError, match=f"pid {proc.pid}"):
        RunLock(lock, on_stale=told.append).acquire()
    assert told == []


def test_a_kill_9_run_is_ended_killed_when_the_next_run_takes_its_lock(tmp_path, monkeypatch):
    """#27: a run killed with kill -9 left its lock and a RUNNING MLflow run; the next run of the
    same folder takes the lock over and ends that run KILLED."""
    import mlflow
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    project = copy_project(tmp_path / "p")
    monkeypatch.chdir(project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    exp = client.create_experiment("sketchseg-sample")
    old = client.create_run(exp).info.run_id  # RUNNING, as a kill -9 leaves it
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = project / "data/06_models/sample/ours-sample" / LOCK_NAME
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": dead.pid, "pid_start": "1", "host": socket.gethostname(),
                                "started": "yesterday", "mlflow_run_id": old}))
    bootstrap_project(project)
    try:
        with KedroSession.create(project_path=project, env="sample") as session:
            with pytest.raises(Exception):  # no data: it stops after taking the lock
                session.run(pipeline_names=["train"])
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
    run = client.get_run(old)
    assert run.info.status == "KILLED"
    assert "ended without closing the run" in run.data.tags["sketchseg.end_reason"]
    assert not lock.exists()


def test_locks_cover_the_variants_folder_and_the_training_state():
    files = {"best_checkpoint": Path("data/06_models/sample/wo_vv/best.safetensors")}
    assert lock_path_for("data/06_models/sample/wo_vv") == Path("data/06_models/sample/wo_vv") / LOCK_NAME
    model = Path("data/06_models/sample/wo_vv").resolve()
    assert lock_folders(files, "data/06_models/sample/wo_vv/training_state.pt") == [model]
    # the catalog's absolute checkpoint path and conf's relative state path name one folder: one lock
    # (two locks of one file made a run take its own lock over, with a "left by ..." warning)
    absolute = {"best_checkpoint": model / "best.safetensors"}
    assert lock_folders(absolute, "data/06_models/sample/wo_vv/training_state.pt") == [model]
    # a training state elsewhere (issue #27): both folders, in one order for every run
    assert lock_folders(files, "elsewhere/state.pt") == sorted([model, Path("elsewhere").resolve()], key=str)


def _hold(lock: Path) -> subprocess.Popen:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"pid": other.pid, "host": socket.gethostname(), "started": "now"}))
    return other


def test_the_training_pipeline_takes_and_releases_the_variants_lock(tmp_path, monkeypatch):
    """Two runs of one variant exclude each other, whatever their training.state_path (issue #27);
    another variant writes to its own folder and is not held up."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    project = copy_project(tmp_path / "p")
    monkeypatch.chdir(project)
    bootstrap_project(project)
    lock = project / "data/06_models/sample/ours-sample" / LOCK_NAME
    other = _hold(lock)
    try:
        for params in (None, {"training": {"state_path": "data/06_models/elsewhere/state.pt"}}):
            with KedroSession.create(project_path=project, env="sample", runtime_params=params) as session:
                with pytest.raises(SketchSegConfigError, match=f"another training run .*pid {other.pid}"):
                    session.run(pipeline_names=["train"])
        assert not (project / "data/06_models/elsewhere" / LOCK_NAME).exists()  # released on refusal
        # another variant: its own folder, its own lock (without data it fails at ingestion, after taking it)
        with KedroSession.create(project_path=project, env="sample",
                                 runtime_params={"experiment": {"variant": "wo_vv"}}) as session:
            with pytest.raises(Exception, match="FS-COCO not found"):
                session.run(pipeline_names=["train"])
        assert not (project / "data/06_models/sample/wo_vv" / LOCK_NAME).exists()
    finally:
        other.kill()
        other.wait()
    lock.unlink()
    # without data the run is refused by its pre-flight, after taking the lock: the lock is released
    with KedroSession.create(project_path=project, env="sample") as session:
        with pytest.raises(Exception, match="FS-COCO not found"):
            session.run(pipeline_names=["train"])
    assert not lock.exists()


def test_a_run_refuses_to_overwrite_another_variants_checkpoint(tmp_path, monkeypatch):
    """A folder shared by two variants (experiment.output_folder pointed at another's): one line
    naming the file and the variant whose model it holds, before anything is written."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    import torch
    from safetensors.torch import save_file

    from sketchseg.model.checkpoint import FORMAT

    project = copy_project(tmp_path / "p")
    monkeypatch.chdir(project)
    bootstrap_project(project)
    best = project / "data/06_models/sample/wo_vv/best.safetensors"
    best.parent.mkdir(parents=True)
    save_file({"w": torch.zeros(1)}, str(best), metadata={"format": FORMAT, "variant": "wo_vv"})
    before = best.read_bytes()
    with KedroSession.create(project_path=project, env="sample",
                             runtime_params={"experiment": {"output_folder": "sample/wo_vv"}}) as session:
        with pytest.raises(SketchSegConfigError) as err:
            session.run(pipeline_names=["train"])
    msg = str(err.value)
    assert "data/06_models/sample/wo_vv/best.safetensors holds the model of variant 'wo_vv'" in msg
    assert "variant 'ours-sample'" in msg and "\n" not in msg
    assert best.read_bytes() == before and not (best.parent / LOCK_NAME).exists()


def test_a_new_checkpoint_removes_the_previous_models_test_results(tmp_path):
    from sketchseg.hooks import SketchSegHooks

    files = {name: tmp_path / f"{name}.out" for name in ("test_metrics", "test_per_sketch", "test_per_category")}
    for path in files.values():
        path.write_text("old")
    hooks = SketchSegHooks()
    hooks._model_files = {**files, "best_checkpoint": tmp_path / "best.safetensors"}
    hooks.after_dataset_saved("last_checkpoint")
    assert all(p.exists() for p in files.values())
    hooks._locks = [RunLock(tmp_path / LOCK_NAME)]  # a run that writes the model (it holds the lock)
    hooks.after_dataset_saved("best_checkpoint")
    assert not any(p.exists() for p in files.values())
