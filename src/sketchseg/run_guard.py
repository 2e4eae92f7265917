"""An MLflow run's status says what happened to the run, whatever happens to it.

kedro-mlflow opens the run in ``before_pipeline_run``, ends it FINISHED in ``after_pipeline_run`` and
FAILED in ``on_pipeline_error``, which Kedro calls for an ``Exception`` only. Left alone, a Ctrl-C'd
run was ended FINISHED by MLflow's own ``atexit`` handler, a SIGTERM'd one stayed RUNNING (no
``atexit`` at all), an unreachable tracking server was retried for minutes, and a server that died
mid-run failed the training at its next metric. :class:`MlflowRunGuard` (a project hook) makes:

* SIGTERM and SIGHUP (a closed terminal or SSH session) the same shutdown as Ctrl-C
  (:class:`RunInterrupted`, a ``KeyboardInterrupt``; a stop whose exception something swallowed stops
  the run at the next node boundary, and an error the stop caused, such as a broken worker pool,
  ends the run KILLED, not FAILED), and an
  interrupted run end KILLED, tagged ``sketchseg.end_reason`` (at process exit, before MLflow's own
  handler; in a notebook, when the next session starts), with a line on how to resume training;
* a failed run end FAILED with the error (``sketchseg.error``) and the node (``sketchseg.failed_node``,
  ``sketchseg.nodes_done``: 0 when it failed in its first node; a run refused by the pre-flight of
  :mod:`sketchseg.pipelines.preflight` never opens an MLflow run);
* MLflow's HTTP client give up in seconds (:data:`HTTP_DEFAULTS`, unless set in the environment) and
  an HTTP tracking server be probed once before the run starts: one line naming the URI if it is
  unreachable;
* a server lost mid-run cost nothing but the tracking: one warning (:func:`sketchseg.tracking.stop_tracking`),
  kedro-mlflow's parameter and dataset logging switched off, the run goes on with its local files.

The configured ``server.mlflow_tracking_uri`` (conf/local/mlflow.yml on top of any environment)
decides where runs go; a user's ``MLFLOW_TRACKING_URI`` that differs gets a warning naming both
(:func:`tracking_uri_from_environment`). Not the other way round: ``mlflow.set_tracking_uri``
exports its URI to that variable itself, so a process that ran one session (or its children)
would silently send the next project's runs to the first one's store.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kedro.framework.hooks import hook_impl

from sketchseg import tracking
from sketchseg.errors import SketchSegConfigError
from sketchseg.workers import STOP_SIGNALS

logger = logging.getLogger(__name__)

#: MLflow's HTTP client defaults retry a dead server for about 4 minutes per call (7 retries,
#: backoff factor 2, 120 s timeout); these give up within seconds. A value set in the environment wins.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
PROBE_TIMEOUT_S = 5.0
NODE_PROBE_TIMEOUT_S = 3.0
ERROR_TAG = "sketchseg.error"
FIT_NODE = "fit_and_select_checkpoint"
_MAX_TAG_CHARS = 8000  # mlflow.utils.validation.MAX_TAG_VAL_LENGTH


class RunInterrupted(KeyboardInterrupt):
    """SIGTERM, turned into the shutdown Ctrl-C gives (``except Exception`` does not swallow it)."""


def tracking_uri_from_environment() -> str | None:
    """``MLFLOW_TRACKING_URI`` when set (not empty) and not MLflow's own export of this process's
    ``mlflow.set_tracking_uri`` (which kedro-mlflow calls in every session)."""
    value = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not value:
        return None
    try:
        from mlflow.tracking._tracking_service import utils as mlflow_tracking_utils
    except ImportError:  # pragma: no cover - mlflow is a dependency
        return value
    return None if value == getattr(mlflow_tracking_utils, "_tracking_uri", None) else value


def apply_http_defaults(environ: dict[str, str] | Any = None) -> dict[str, str]:
    """Set :data:`HTTP_DEFAULTS` where the environment does not; returns those set."""
    environ = os.environ if environ is None else environ
    applied = {k: v for k, v in HTTP_DEFAULTS.items() if not str(environ.get(k, "")).strip()}
    environ.update(applied)
    return applied


def is_http(uri: str | None) -> bool:
    return bool(uri) and urlsplit(str(uri)).scheme in ("http", "https")


def redact(uri: str) -> str:
    """``uri`` without a password (``http://user:***@host``)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc[-1]}"))


def unreachable_reason(uri: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the HTTP server at ``uri`` does not answer, in a few words; None when it answers (any
    HTTP status counts: a server behind authentication answers too)."""
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout, allow_redirects=False)
    except requests.exceptions.Timeout:
        return f"no answer within {timeout:g} s"
    except requests.exceptions.ConnectionError as exc:
        text = str(exc)
        return "connection refused" if "refused" in text.lower() else f"cannot connect: {text.splitlines()[0][:200]}"
    except requests.exceptions.RequestException as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


def check_tracking_server(uri: str | None, timeout: float = PROBE_TIMEOUT_S) -> None:
    """One try at an HTTP(S) tracking server before the run starts; raises one line naming it."""
    if not is_http(uri):
        return
    reason = unreachable_reason(str(uri), timeout)
    if reason is not None:
        raise SketchSegConfigError(
            f"MLflow tracking server {redact(str(uri))} is unreachable ({reason}): start it, or point "
            "server.mlflow_tracking_uri (conf/local/mlflow.yml) at one that runs"
        )


@contextlib.contextmanager
def _no_http_retries() -> Iterator[None]:
    """MLflow calls inside give up at once (closing a run whose server is gone)."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "3"})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class MlflowRunGuard:
    """Project hook (see the module docstring); its state is the current run's."""

    def __init__(self) -> None:
        self._uri: str | None = None
        self._mlflow_hooks: list[Any] = []
        self._pid = os.getpid()  # the run's process; set again where the signal handlers are installed
        self._reset_run()

    def _reset_run(self) -> None:
        self._run_id: str | None = None
        self._open = False  # a run this guard watches has started and not ended
        self._catalog: Any = None
        self._signal: str | None = None
        self._node: str | None = None
        self._failed_node: str | None = None
        self._nodes_done = 0
        self._state_path: str | None = None
        self._trains = False
        self._saved_handlers: dict[int, Any] = {}

    # ------------------------------------------------------------------ before the run
    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        self.end_interrupted_run()  # a notebook's Ctrl-C'd session left its run open
        from kedro.config import MissingConfigException

        applied = apply_http_defaults()
        if applied:
            logger.debug("MLflow HTTP client: %s", applied)
        try:
            conf = dict(context.config_loader["mlflow"] or {})
        except MissingConfigException:
            conf = {}
        self._uri = (conf.get("server") or {}).get("mlflow_tracking_uri")
        from_env = tracking_uri_from_environment()
        if from_env and self._uri and from_env != self._uri:
            logger.warning("MLFLOW_TRACKING_URI=%s is not used: runs go to the configured %s (set "
                           "server.mlflow_tracking_uri in conf/local/mlflow.yml to track elsewhere)",
                           redact(from_env), redact(str(self._uri)))
        self._mlflow_hooks = [p for p in context._hook_manager.get_plugins() if type(p).__name__ == "MlflowHook"]
        self._note_local_parameters(context)
        check_tracking_server(self._uri)

    @staticmethod
    def _note_local_parameters(context: Any) -> None:
        env = context.env or "local"
        local = Path(context.project_path) / "conf" / "local"
        if env != "local" and any(local.glob("parameters*")):
            logger.info("conf/local/parameters* is not applied under --env=%s (its data roots and weights are the "
                        "real FS-COCO run's); conf/local/mlflow.yml and credentials are", env)

    @hook_impl(trylast=True)  # after kedro-mlflow opened the run
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        import mlflow

        self._reset_run()
        tracking.reset_tracking(self._tracking_stopped)
        run = mlflow.active_run()
        self._run_id = run.info.run_id if run is not None else None
        self._open = self._run_id is not None
        self._catalog = catalog
        self._trains = any(n.name == FIT_NODE for n in pipeline.nodes)
        try:
            self._state_path = str(((catalog.load("parameters") or {}).get("training") or {}).get("state_path") or "")
        except Exception:  # noqa: BLE001 - only for the resume hint
            self._state_path = None
        if self._open:
            self._install_signal_handlers()
            _watch(self)

    # ------------------------------------------------------------------ during the run
    @hook_impl(tryfirst=True)  # before kedro-mlflow logs the node's parameters
    def before_node_run(self, node: Any) -> None:
        self._stop_if_signalled()
        self._node = node.name
        self._probe_mid_run()

    @hook_impl(tryfirst=True)  # before the node's outputs (kedro-mlflow datasets among them) are saved
    def after_node_run(self, node: Any) -> None:
        self._stop_if_signalled()
        self._nodes_done += 1
        self._probe_mid_run()

    def _stop_if_signalled(self) -> None:
        """A stop signal whose exception something swallowed (Python prints "Exception ignored in"
        for one raised inside a fork hook or a ``__del__``) still stops the run, at the next node
        boundary: it never carries on to FINISHED."""
        if self._open and self._signal is not None:
            raise RunInterrupted(f"stopped by {self._signal}")

    @hook_impl
    def on_node_error(self, node: Any) -> None:
        self._failed_node = node.name

    def _probe_mid_run(self) -> None:
        if self._open and is_http(self._uri) and not tracking.tracking_stopped():
            reason = unreachable_reason(str(self._uri), NODE_PROBE_TIMEOUT_S)
            if reason is not None:
                tracking.stop_tracking(f"tracking server {redact(str(self._uri))} lost: {reason}")

    def _tracking_stopped(self, reason: str) -> None:
        """Tracking is gone for this run: kedro-mlflow must neither log nor end the run over the network."""
        from kedro_mlflow.io.catalog.switch_catalog_logging import switch_catalog_logging

        for hook in self._mlflow_hooks:
            hook._is_mlflow_enabled = False
            hook.run_id = None
        if self._catalog is not None:
            switch_catalog_logging(self._catalog, False)

    # ------------------------------------------------------------------ the end of the run
    @hook_impl(tryfirst=True)  # tags the run before kedro-mlflow ends it FAILED
    def on_pipeline_error(self, error: Exception) -> None:
        if self._open and self._signal is not None:
            # the error came from the stop (e.g. a BrokenProcessPool: the signal reached the workers
            # too): the run was interrupted, so it ends KILLED, not FAILED; kedro-mlflow then finds it closed
            self.end_interrupted_run(f"interrupted by {self._signal} ({type(error).__name__})")
            return
        self._restore_signal_handlers()
        if not self._open:
            return
        tags = {ERROR_TAG: f"{type(error).__name__}: {error}"[:_MAX_TAG_CHARS],
                "sketchseg.failed_node": self._failed_node or self._node or "?",
                "sketchseg.nodes_done": str(self._nodes_done)}
        self._tag(tags)
        self._open = False
        if tracking.tracking_stopped():
            self._close_locally("FAILED")

    @hook_impl(tryfirst=True)
    def after_pipeline_run(self) -> None:
        self._restore_signal_handlers()
        if not self._open:
            return
        self._open = False
        stopped = tracking.tracking_stopped()
        if stopped:
            self._close_locally("FINISHED")
            logger.warning("the run finished; MLflow run %s at %s lacks what came after tracking stopped (%s) "
                           "and may show RUNNING there; the local files are complete", self._run_id,
                           redact(str(self._uri)), stopped)

    def end_interrupted_run(self, reason: str | None = None) -> None:
        """End the watched run KILLED if it started and neither finished nor failed (interrupted)."""
        if not self._open:
            return
        self._open = False
        self._restore_signal_handlers()
        reason = reason or (f"interrupted by {self._signal}" if self._signal else "interrupted")
        where = f" in node {self._node}" if self._node else ""
        if not tracking.tracking_stopped():
            self._tag({"sketchseg.end_reason": f"{reason}{where}"})
        self._close_locally("KILLED", via_server=not tracking.tracking_stopped())
        logger.warning("MLflow run %s ended KILLED (%s%s)", self._run_id, reason, where)
        if self._trains and self._state_path and Path(self._state_path).is_file():
            logger.warning("the training state of the last finished epoch is in %s: continue with "
                           "`kedro run ... --params training.resume=true`", self._state_path)

    def _tag(self, tags: dict[str, str]) -> None:
        if self._run_id is None or tracking.tracking_stopped():
            return
        try:
            from mlflow.tracking import MlflowClient

            client = MlflowClient()
            for key, value in tags.items():
                client.set_tag(self._run_id, key, value)
        except Exception as exc:  # noqa: BLE001 - the run's own error matters more
            tracking.stop_tracking(f"tagging the run failed: {type(exc).__name__}: {str(exc)[:200]}")

    def _close_locally(self, status: str, via_server: bool = False) -> None:
        """End the run with ``status``: on the server when it is there, in this process anyway (so
        that neither kedro-mlflow nor MLflow's exit handler waits on a dead server)."""
        import mlflow

        with contextlib.ExitStack() as stack:
            if not via_server:
                stack.enter_context(_no_http_retries())
            ended = False
            for _ in range(1000):  # kedro-mlflow re-opens its run (nested) at every node: pop them all
                active = mlflow.active_run()
                if active is None or active.info.run_id != self._run_id:
                    break
                try:
                    mlflow.end_run(status)  # pops the run first, then tells the server
                    ended = True
                except Exception as exc:  # noqa: BLE001 - the server is gone: nothing more to tell it
                    logger.debug("could not end MLflow run %s as %s: %s", self._run_id, status, exc)
            if not ended and via_server and self._run_id is not None:
                try:
                    from mlflow.tracking import MlflowClient

                    MlflowClient().set_terminated(self._run_id, status)
                except Exception as exc:  # noqa: BLE001
                    logger.debug("could not end MLflow run %s as %s: %s", self._run_id, status, exc)

    # ------------------------------------------------------------------ signals
    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        self._pid = os.getpid()
        for sig in STOP_SIGNALS:  # Ctrl-C, kill, and SIGHUP: the terminal or SSH session closed
            previous = signal.getsignal(sig)
            if previous is signal.SIG_IGN:  # nohup / a background job: the user's choice stays
                continue
            self._saved_handlers[sig] = previous
            signal.signal(sig, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in self._saved_handlers.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._saved_handlers = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._pid:
            # a forked child inherited the handler (a multiprocessing worker, which its pool ends with
            # SIGTERM): it is not the run, so it ends as without the guard, silently
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        name = signal.Signals(signum).name
        if self._signal is None:
            self._signal = name
            logger.warning("%s received: stopping the run", name)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise RunInterrupted(f"stopped by {name}")


_watched: list[MlflowRunGuard] = []


def _watch(guard: MlflowRunGuard) -> None:
    if not _watched:  # registered after MLflow's own exit handler (imported earlier), so it runs first
        atexit.register(_end_at_exit)
    if guard not in _watched:
        _watched.append(guard)


def _end_at_exit() -> None:
    """At exit, before MLflow's handler (which would end an open run FINISHED): interrupted runs end KILLED."""
    for guard in _watched:
        guard.end_interrupted_run()
