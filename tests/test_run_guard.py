"""MLflow tracking that never costs a run: HTTP client defaults, the server probe, tracking that
stops after one warning, and where the tracking URI comes from (conf, conf/local)."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import textwrap

import mlflow
import pytest

from sketchseg import run_guard, tracking
from sketchseg.errors import SketchSegConfigError


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_defaults_give_up_fast_but_keep_the_users_values():
    environ = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "300"}
    applied = run_guard.apply_http_defaults(environ)
    assert environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "300" and "MLFLOW_HTTP_REQUEST_TIMEOUT" not in applied
    retries, backoff = int(environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]), int(environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"])
    # urllib3 waits 0, then backoff * 2**(n-1) s before retry n: a dead server costs seconds, not minutes
    assert sum(backoff * 2 ** (n - 1) for n in range(2, retries + 1)) <= 10


def test_unreachable_server_is_one_line_naming_the_uri():
    uri = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(SketchSegConfigError) as info:
        run_guard.check_tracking_server(uri)
    message = str(info.value)
    assert uri in message and "unreachable" in message and "\n" not in message
    run_guard.check_tracking_server("sqlite:///nowhere/mlflow.db")  # not a server: nothing to probe


def test_a_password_in_the_uri_is_not_shown():
    assert run_guard.redact("https://me:secret@mlflow.lab:5000") == "https://me:***@mlflow.lab:5000"


@pytest.fixture()
def sqlite_run(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = mlflow.start_run(experiment_id="0")  # the new store's default experiment, whatever was active before
    yield run
    while mlflow.active_run() is not None:
        mlflow.end_run()
    tracking.reset_tracking()


def test_a_failing_tracking_call_warns_once_and_the_run_goes_on(sqlite_run, monkeypatch, caplog):
    stopped = []
    tracking.reset_tracking(stopped.append)
    calls = []

    def dead_server(*args, **kwargs):
        calls.append(args)
        raise mlflow.exceptions.MlflowException("API request to http://127.0.0.1:1/api failed: connection refused")

    monkeypatch.setattr(mlflow, "log_metrics", dead_server)
    monkeypatch.setattr(mlflow, "set_tags", dead_server)
    with caplog.at_level(logging.WARNING, logger="sketchseg.tracking"):
        for epoch in range(3):
            tracking.log_metrics({"val_miou": 1.0}, step=epoch)
            tracking.set_tags({"x": 1})
    assert len(calls) == 1  # after the first failure, nothing more is sent
    assert len(stopped) == 1 and "connection refused" in stopped[0]
    warnings = [r for r in caplog.records if "MLflow tracking stopped" in r.getMessage()]
    assert len(warnings) == 1
    tracking.reset_tracking()  # a new run tracks again
    assert tracking.tracking_stopped() is None


# ---------------------------------------------------------------- where the tracking URI comes from
def _loader(project, env):
    from sketchseg import settings

    return settings.CONFIG_LOADER_CLASS(conf_source=str(project / "conf"), env=env, **settings.CONFIG_LOADER_ARGS)


def test_conf_local_machine_settings_apply_under_every_environment(kedro_project, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    local = kedro_project / "conf" / "local"
    (local / "mlflow.yml").write_text("server:\n  mlflow_tracking_uri: sqlite:////machine/runs.db\n")
    (local / "parameters.yml").write_text("data:\n  fscoco_root: /datasets/fscoco\n")
    for env in ("sample", "base", None):
        conf = _loader(kedro_project, env)["mlflow"]
        assert conf["server"]["mlflow_tracking_uri"] == "sqlite:////machine/runs.db", env
    assert _loader(kedro_project, "sample")["mlflow"]["tracking"]["experiment"]["name"] == "sketchseg-sample"
    # parameters in conf/local belong to the default environment (real FS-COCO), not to the sample
    assert _loader(kedro_project, None)["parameters"]["data"]["fscoco_root"] == "/datasets/fscoco"
    assert _loader(kedro_project, "sample")["parameters"]["data"]["fscoco_root"] != "/datasets/fscoco"


def test_mlflows_own_export_of_the_tracking_uri_is_not_the_users(tmp_path, monkeypatch):
    """``mlflow.set_tracking_uri`` (kedro-mlflow calls it in every session) exports the URI to
    MLFLOW_TRACKING_URI: the next session of this process, or a kedro subprocess, must not warn
    about it as if the user had set it."""
    from mlflow.tracking._tracking_service import utils as mlflow_tracking_utils

    from sketchseg.experiments.project import kedro_subprocess_env

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(mlflow_tracking_utils, "_tracking_uri", mlflow_tracking_utils._tracking_uri)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'first-session.db'}")
    assert run_guard.tracking_uri_from_environment() is None
    assert "MLFLOW_TRACKING_URI" not in kedro_subprocess_env()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://users-choice:5000")
    assert run_guard.tracking_uri_from_environment() == "http://users-choice:5000"
    assert kedro_subprocess_env()["MLFLOW_TRACKING_URI"] == "http://users-choice:5000"


def test_a_forked_worker_ends_quietly_when_its_pool_ends_it():
    """Pool workers forked during a run inherit the guard's handler; the pool ends them with SIGTERM.
    Only the run's own process may take that as "stop the run" (before: a warning and a traceback
    per worker in the demo's make_sample)."""
    code = textwrap.dedent("""
        import logging, multiprocessing as mp
        from sketchseg.run_guard import MlflowRunGuard
        logging.basicConfig(level=logging.INFO)
        def square(x):
            return x * x
        guard = MlflowRunGuard()
        guard._install_signal_handlers()
        for _ in range(20):
            with mp.get_context("fork").Pool(2) as pool:
                print(pool.map(square, range(4)))
        guard._restore_signal_handlers()
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and proc.stdout.count("[0, 1, 4, 9]") == 20, proc.stderr[-3000:]
    assert "SIGTERM received" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
