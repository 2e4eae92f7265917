"""The project's ``kedro run`` (also ``python -m sketchseg``): Kedro's own run command, with errors a
user can cause told in one line.

A run that stops on missing data or weights, a checkpoint not trained yet, a bad parameter or file
or an unknown ``--env`` (``SketchSegError`` / ``ModelError``, also when Kedro wraps them in a
``DatasetError``), or on a catalog input whose file does not exist yet (named with the pipeline that
makes it, e.g. ``--pipelines=pretrain_sample`` before ``make_sample``), prints ``Error: <what is wrong and what to do>`` on stderr and exits with 1,
instead of a rich traceback box and Kedro's "No nodes ran. Repeat the previous command" advice.
The full traceback still goes to the log file of ``conf/logging.yml`` (``info.log``), and to the
terminal as well with ``SKETCHSEG_VERBOSE=1``. Any other exception (a bug) is shown in full, as
before. Kedro finds this module by its name (``<package>.cli``) and prefers its ``run`` command.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run
from kedro.framework.cli.utils import CONTEXT_SETTINGS

from sketchseg.errors import SketchSegConfigError, SketchSegDataError, SketchSegError
from sketchseg.hooks import remember_command
from sketchseg.model.errors import ModelError

VERBOSE_ENV = "SKETCHSEG_VERBOSE"
"""``SKETCHSEG_VERBOSE=1``: a user error is shown with its full traceback, as any other error."""

logger = logging.getLogger(__name__)

_RERUN_ADVICE = "No nodes ran. Repeat the previous command"


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        yield current
        seen.add(id(current))
        current = current.__cause__ or current.__context__


def user_error(exc: BaseException) -> BaseException | None:
    """The error a user can act on behind ``exc`` (itself, or a cause Kedro wrapped), else None."""
    return next((e for e in _chain(exc) if isinstance(e, (SketchSegError, ModelError))), None)


_LOAD_FAILED = re.compile(r"^(?P<name>[^\s:]+(?::[^\s:]+)?): Failed while loading data from dataset")


def _registered_producers(dataset: str) -> list[str]:
    """The registered pipelines (``__default__`` aside) that write ``dataset``; [] outside a project."""
    try:
        from kedro.framework.project import pipelines

        return sorted(name for name, pipe in pipelines.items()
                      if name != "__default__" and dataset in pipe.all_outputs())
    except Exception:  # noqa: BLE001 - no project configured: no advice, the error stays one line
        return []


def missing_input(exc: BaseException, env: str | None = None,
                  producers: Any = _registered_producers) -> SketchSegDataError | None:
    """A catalog input whose file does not exist (Kedro's ``DatasetError`` on load, caused by a
    ``FileNotFoundError``) as a one-line data error naming the dataset, the file and the pipeline
    that makes it (``producers(dataset) -> [pipeline names]``); None for any other error."""
    chain = list(_chain(exc))
    missing = next((e for e in chain if isinstance(e, FileNotFoundError)), None)
    loads = [m for e in chain if (m := _LOAD_FAILED.match(str(e)))]
    if missing is None or not loads:
        return None
    return input_not_found(loads[0]["name"], str(missing.filename) if missing.filename else None, env, producers)


def input_not_found(name: str, path: str | None, env: str | None = None,
                    producers: Any = _registered_producers) -> SketchSegDataError:
    """The one-line data error of a catalog input ``name`` whose file ``path`` does not exist,
    naming the pipeline that makes it (also the run's pre-flight, sketchseg.pipelines.preflight)."""
    shown = _display(path) if path else "its file"
    makers = producers(name)
    suffix = f" --env={env}" if env else ""
    if makers:
        todo = " or ".join(f"`kedro run --pipelines={m}{suffix}`" for m in makers)
        advice = f"it is made by {todo}: run that first"
    else:
        advice = f"check the path of the catalog entry '{name}' in conf/"
    return SketchSegDataError(f"input '{name}' not found: {shown} does not exist; {advice}")


_UNKNOWN_PIPELINE = re.compile(r"Failed to find the pipeline named '(?P<name>[^']*)'")


def _registered_pipelines() -> list[str]:
    try:
        from kedro.framework.project import pipelines

        pipelines.set_requested(None)  # Kedro narrowed them to the requested (unknown) one
        return sorted(name for name in pipelines.keys() if name != "__default__")
    except Exception:  # noqa: BLE001 - no project configured: the error names the pipeline only
        return []


def unknown_pipeline(exc: BaseException, known: Any = _registered_pipelines) -> SketchSegConfigError | None:
    """Kedro's "Failed to find the pipeline named 'trian'" (a ``ValueError`` with a multi-line
    suggestion) as one line: the closest registered pipeline, then all of them; None otherwise."""
    import difflib

    match = next((m for e in _chain(exc) if isinstance(e, ValueError) and (m := _UNKNOWN_PIPELINE.search(str(e)))),
                 None)
    if match is None:
        return None
    name, names = match["name"], list(known())
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    listed = f"(the pipelines are: {', '.join(names)})" if names else ""
    return SketchSegConfigError(f"no pipeline named '{name}'; {hint}{listed}".rstrip())


#: errno values of a file system that cannot take what a run writes (full, over quota, read-only)
_STORAGE_ERRNOS = {"ENOSPC", "EDQUOT", "EROFS", "EFBIG"}


def storage_error(exc: BaseException) -> SketchSegDataError | None:
    """A file system or tracking-store problem a user can fix, as one line naming the path: a folder
    in a path that is a file (``training.state_path`` under a file, ``data/08_reporting`` a file), a
    file where a folder must go, no permission, a full or read-only disk, a corrupt MLflow sqlite
    database. None for any other error (a missing input has :func:`missing_input`)."""
    import errno
    import sqlite3

    for e in _chain(exc):
        if isinstance(e, sqlite3.DatabaseError):
            return SketchSegDataError(
                f"the MLflow tracking database cannot be read ({one_line(e)}): it is damaged or not a sqlite file; "
                "move mlflow.db aside (a new one is made at the next run) or set server.mlflow_tracking_uri "
                "in conf/local/mlflow.yml")
        if not isinstance(e, OSError) or isinstance(e, FileNotFoundError):
            continue
        code = errno.errorcode.get(e.errno or 0, "")
        where = _display(str(e.filename)) if e.filename else "a file of the run"
        blocker = _file_in_the_way(str(e.filename)) if e.filename else None
        if isinstance(e, (NotADirectoryError, FileExistsError)) and blocker is not None:
            lead = "" if blocker == Path(str(e.filename)) else f"cannot write {where}: "
            return SketchSegDataError(f"{lead}{_display(str(blocker))} is a file where a folder is needed; "
                                      "move that file or choose another path")
        if isinstance(e, (IsADirectoryError, FileExistsError, NotADirectoryError)):
            return SketchSegDataError(f"cannot write {where}: a folder or file of that name is in the way; "
                                      "move it or choose another path")
        if isinstance(e, PermissionError):
            return SketchSegDataError(f"cannot write {where}: permission denied")
        if code in _STORAGE_ERRNOS:
            return SketchSegDataError(f"cannot write {where}: {e.strerror or code}; free space or choose "
                                      "another folder")
    return None


def _file_in_the_way(path: str) -> Path | None:
    """The path itself or its nearest existing parent, when that is a file (a folder was needed)."""
    for candidate in (Path(path), *Path(path).parents):
        if candidate.exists():
            return candidate if candidate.is_file() else None
    return None


def one_line(exc: BaseException) -> str:
    """The error's message on one line."""
    return " ".join(part.strip() for part in str(exc).splitlines() if part.strip()) or type(exc).__name__


def _file_handlers() -> list[logging.FileHandler]:
    handlers: list[logging.Handler] = list(logging.getLogger().handlers)
    for name in ("sketchseg", "kedro"):
        handlers += logging.getLogger(name).handlers
    return [h for h in dict.fromkeys(handlers) if isinstance(h, logging.FileHandler)]


def _log_to_files(exc: BaseException) -> list[str]:
    """Write ``exc`` with its traceback to the log files only (not the console); returns their paths."""
    paths = []
    for handler in _file_handlers():
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, "run failed: %s", (one_line(exc),),
                                   (type(exc), exc, exc.__traceback__))
        handler.handle(record)
        paths.append(handler.baseFilename)
    return paths


class _HideRerunAdvice(logging.Filter):
    """Kedro's "No nodes ran. Repeat the previous command" is no advice after an error in the input."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_RERUN_ADVICE)


@contextlib.contextmanager
def _console_without_rerun_advice() -> Iterator[None]:
    consoles = [h for h in logging.getLogger().handlers if not isinstance(h, logging.FileHandler)]
    hide = _HideRerunAdvice()
    for handler in consoles:
        handler.addFilter(hide)
    try:
        yield
    finally:
        for handler in consoles:
            handler.removeFilter(hide)


def _display(path: str) -> str:
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(Path.cwd()))
    return path


def typed_command(ctx: click.Context) -> str | None:
    """The command line as the user typed it, when this process was started by it."""
    root = ctx.find_root()
    argv = sys.argv[1:]
    if root is not ctx and root.info_name == "kedro" and argv[:1] == ["run"]:
        return shlex.join(["kedro", *argv])
    if root is ctx and sys.argv and Path(sys.argv[0]).parent.name == "sketchseg":
        return shlex.join(["python", "-m", "sketchseg", *argv])
    return None


@contextlib.contextmanager
def one_line_errors(env: str | None = None) -> Iterator[None]:
    """Turn a user error raised inside into ``Error: ...`` on stderr and exit status 1 (see the module);
    ``env`` (``--env``) goes into the advice of a missing input."""
    loud = verbose()
    try:
        with contextlib.nullcontext() if loud else _console_without_rerun_advice():
            yield
    except Exception as exc:
        cause = user_error(exc) or missing_input(exc, env) or unknown_pipeline(exc) or storage_error(exc)
        logs = _log_to_files(exc)
        if cause is None or loud:
            raise
        where = f"traceback in {', '.join(_display(p) for p in logs)}, or" if logs else "traceback:"
        click.echo(f"Error: {one_line(cause)} ({where} rerun with {VERBOSE_ENV}=1)", err=True)
        raise click.exceptions.Exit(1) from None


@click.group(context_settings=CONTEXT_SETTINGS, name="sketchseg")
def cli() -> None:
    """sketchseg's project commands."""


@click.pass_context
def _run(ctx: click.Context, **kwargs: Any) -> Any:
    remember_command(typed_command(ctx))
    try:
        with one_line_errors(kwargs.get("env")):
            return kedro_run.callback(**kwargs)  # type: ignore[misc]
    finally:
        remember_command(None)


run = click.Command(
    name="run",
    context_settings=CONTEXT_SETTINGS,
    callback=_run,
    params=list(kedro_run.params),
    help=(kedro_run.help or "Run the pipeline.")
    + f"\n\nErrors in the input are told in one line; {VERBOSE_ENV}=1 shows their traceback.",
)
cli.add_command(run)
