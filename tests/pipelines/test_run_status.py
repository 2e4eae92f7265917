"""An MLflow run's status and tags say what happened to the run (through Kedro's runner and
kedro-mlflow): KILLED after SIGINT / SIGTERM / SIGHUP, FAILED with the error, and tracked where conf
(conf/local under any environment) says, with a warning for a differing MLFLOW_TRACKING_URI."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from kedro.framework.hooks import hook_impl
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from sketchseg import run_guard
from sketchseg.errors import SketchSegConfigError, SketchSegDataError
from sketchseg.experiments.project import kedro_subprocess_env
from tests.pipelines.kedro_utils import TINY, nested, run
from tests.pipelines.test_tracking_server import Messages
from tests.test_run_guard import closed_port


def _runs(db: Path, experiment: str = "sketchseg-sample") -> list:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}")
    exps = [e for e in client.search_experiments() if e.name == experiment]
    return client.search_runs([exps[0].experiment_id]) if exps else []


class SignalAtNode:
    """Sends this process ``sig`` as the first node starts, as Ctrl-C or ``kill`` would."""

    def __init__(self, sig: int) -> None:
        self.sig = sig

    @hook_impl
    def before_node_run(self, node) -> None:
        os.kill(os.getpid(), self.sig)
        time.sleep(1)  # the handler runs in this thread before this returns


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: signal.Signals(s).name)
def test_a_signalled_run_ends_killed(kedro_project, monkeypatch, sig):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # a background start (CI, nohup) ignores Ctrl-C; a terminal delivers it, as here
    sigint_before = signal.signal(signal.SIGINT, signal.default_int_handler)
    bootstrap_project(kedro_project)
    try:
        with pytest.raises(KeyboardInterrupt):
            with KedroSession.create(project_path=kedro_project, env="sample", runtime_params=nested(TINY)) as session:
                session._hook_manager.register(SignalAtNode(sig))
                session.run(pipeline_names=["make_sample"])
        run_guard._end_at_exit()  # what the process's exit does (before MLflow's handler ends it FINISHED)
    finally:
        signal.signal(signal.SIGINT, sigint_before)
        while mlflow.active_run() is not None:
            mlflow.end_run()
    (r,) = _runs(kedro_project / "mlflow.db")
    assert r.info.status == "KILLED"
    assert r.data.tags["sketchseg.end_reason"] == f"interrupted by {signal.Signals(sig).name} in node make_sample"
    assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None)  # handlers given back


class SwallowedSignalAtNode:
    """Sends SIGTERM as the first node starts and swallows the exception it raises, as Python does
    for one raised inside a fork hook ("Exception ignored in ..."); then, with ``fail``, raises what
    a worker pool that the same signal killed raises."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail

    @hook_impl
    def before_node_run(self, node) -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        except run_guard.RunInterrupted:
            pass
        if self.fail:
            raise RuntimeError("A process in the process pool was terminated abruptly (BrokenProcessPool)")


@pytest.mark.parametrize("fail", [False, True], ids=["swallowed", "broken-pool"])
def test_a_stop_signal_ends_the_run_killed_even_when_its_exception_is_lost(kedro_project, monkeypatch, fail):
    """#27: a SIGTERM while ingestion forked its workers carried on to FINISHED or ended FAILED."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    bootstrap_project(kedro_project)
    try:
        with pytest.raises(BaseException) as info:
            with KedroSession.create(project_path=kedro_project, env="sample", runtime_params=nested(TINY)) as session:
                session._hook_manager.register(SwallowedSignalAtNode(fail))
                session.run(pipeline_names=["make_sample"])
        run_guard._end_at_exit()
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
    (r,) = _runs(kedro_project / "mlflow.db")
    assert r.info.status == "KILLED", info.value
    assert r.data.tags["sketchseg.end_reason"].startswith("interrupted by SIGTERM")
    assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None)  # handlers given back


def test_a_run_without_its_data_is_refused_before_the_mlflow_run_starts(kedro_project, monkeypatch):
    """No FS-COCO under data/01_raw: the pre-flight (before kedro-mlflow opens its run) says so in
    one line, and no FAILED run is left in MLflow."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(SketchSegDataError, match="FS-COCO not found: expected at data/01_raw/fscoco"):
        run(kedro_project, "ingestion", env="base")
    assert _runs(kedro_project / "mlflow.db", experiment="sketchseg") == []
    # the experiment kedro-mlflow made is one of model training for the MLflow UI, from the start
    (exp,) = [e for e in mlflow.MlflowClient(tracking_uri=f"sqlite:///{kedro_project / 'mlflow.db'}").search_experiments()
              if e.name == "sketchseg"]
    assert exp.tags.get("mlflow.experimentKind") == "custom_model_development"


def test_a_failed_run_ends_failed_with_the_error(kedro_project, monkeypatch):
    """A failure in the first node (FS-COCO's folders there, but empty): FAILED, the reason and the
    node as tags, and nodes_done 0 says that nothing ran."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for folder in ("raster_sketches", "vector_sketches", "text"):
        (kedro_project / "data/01_raw/fscoco" / folder).mkdir(parents=True)
    with pytest.raises(Exception, match="no sketches found under data/01_raw/fscoco"):
        run(kedro_project, "ingestion", env="base")
    (r,) = _runs(kedro_project / "mlflow.db", experiment="sketchseg")
    assert r.info.status == "FAILED"
    assert "no sketches found under data/01_raw/fscoco" in r.data.tags[run_guard.ERROR_TAG]
    assert r.data.tags["sketchseg.failed_node"] == "ingest_fscoco"
    assert r.data.tags["sketchseg.nodes_done"] == "0"


def test_an_unreachable_tracking_server_fails_at_once(kedro_project, monkeypatch):
    uri = f"http://127.0.0.1:{closed_port()}"
    (kedro_project / "conf/local/mlflow.yml").write_text(f"server:\n  mlflow_tracking_uri: {uri}\n")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for key in run_guard.HTTP_DEFAULTS:  # MLflow's own defaults would retry for minutes
        monkeypatch.delenv(key, raising=False)
    t0 = time.monotonic()
    with pytest.raises(SketchSegConfigError, match=f"MLflow tracking server {uri} is unreachable"):
        run(kedro_project, "make_sample")
    assert time.monotonic() - t0 < 30  # the bound (it was > 240 s)


def test_a_differing_mlflow_tracking_uri_is_warned_about(kedro_project, tmp_path, monkeypatch):
    """The configured URI decides (MLflow exports the variable itself, so it may be a leftover);
    a user's MLFLOW_TRACKING_URI that differs is named in a warning, never silently dropped."""
    other = f"sqlite:///{tmp_path / 'from-env.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", other)
    messages = Messages()
    logging.getLogger("sketchseg").addHandler(messages)
    try:
        run(kedro_project, "make_sample")
    finally:
        logging.getLogger("sketchseg").removeHandler(messages)
    assert [r.info.status for r in _runs(kedro_project / "mlflow.db")] == ["FINISHED"]
    assert not (tmp_path / "from-env.db").exists()
    warned = [m for m in messages.lines if m.startswith(f"MLFLOW_TRACKING_URI={other} is not used")]
    assert len(warned) == 1 and f"{kedro_project}/mlflow.db" in warned[0]


def test_conf_local_tracking_uri_applies_under_the_sample_env(kedro_project, tmp_path, monkeypatch):
    db = tmp_path / "machine.db"
    (kedro_project / "conf/local/mlflow.yml").write_text(f"server:\n  mlflow_tracking_uri: sqlite:///{db}\n")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run(kedro_project, "make_sample")
    assert [r.info.status for r in _runs(db)] == ["FINISHED"]
    assert not (kedro_project / "mlflow.db").exists()  # the configured store was never opened


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: signal.Signals(s).name)
def test_kill_ends_a_training_run_killed(kedro_project, monkeypatch, sig):
    """The real thing: ``kedro run`` in its own process, SIGTERM (``kill``) or SIGHUP (the terminal or
    SSH session closed) while it trains: it used to stay RUNNING, and after SIGHUP its lock stayed."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run(kedro_project, "make_sample")
    params = {**TINY, "training.epochs": 20}
    arg = ",".join(f"{k}={'null' if v is None else v}".replace(" ", "") for k, v in params.items())
    kedro = Path(sys.executable).parent / "kedro"
    log = (kedro_project / "kedro.log").open("w")
    proc = subprocess.Popen([str(kedro), "run", "--pipelines=train", "--env=sample", "--params", arg],
                            cwd=kedro_project, env=kedro_subprocess_env(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not any("val_miou" in r.data.metrics for r in _runs(kedro_project / "mlflow.db")
                      if r.info.status == "RUNNING"):
            assert proc.poll() is None, (kedro_project / "kedro.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(1)
        proc.send_signal(sig)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    train = [r for r in _runs(kedro_project / "mlflow.db") if r.data.tags.get("sketchseg.pipeline") == "train"]
    assert [r.info.status for r in train] == ["KILLED"], (kedro_project / "kedro.log").read_text()[-3000:]
    assert f"{signal.Signals(sig).name} in node fit_and_select_checkpoint" in train[0].data.tags["sketchseg.end_reason"]
    assert not list((kedro_project / "data").rglob("*.lock")), "the run's lock was left behind"


@pytest.mark.slow
def test_sigterm_while_ingestion_runs_its_worker_pool_ends_killed_with_the_workers_stopped(kedro_project, monkeypatch):
    """#27: SIGTERM while ingestion started its worker processes ended the run FINISHED, FAILED
    (BrokenProcessPool) or KILLED by chance. Through the real command: the run ends KILLED and no
    process of it is left (its workers included)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    kedro = Path(sys.executable).parent / "kedro"
    env = kedro_subprocess_env()
    subprocess.run([str(kedro), "run", "--pipelines=make_sample", "--env=sample"], cwd=kedro_project, env=env,
                   check=True, capture_output=True, timeout=300)  # 400 sketches: ingestion uses its pool
    log_path = kedro_project / "data.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([str(kedro), "run", "--pipelines=data", "--env=sample", "--params", "data.workers=2"],
                                cwd=kedro_project, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "ingest FS-COCO" not in log_path.read_text(errors="replace"):
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "ingestion did not start"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):  # nothing of the run's session is left: no orphaned worker
        os.killpg(proc.pid, 0)
    data_runs = [r for r in _runs(kedro_project / "mlflow.db") if r.data.tags.get("sketchseg.pipeline") == "data"]
    assert [r.info.status for r in data_runs] == ["KILLED"], log_path.read_text()[-3000:]
    assert "Exception ignored" not in log_path.read_text() and "BrokenProcessPool" not in log_path.read_text()
