"""The console and info.log of ``conf/logging.yml``, made readable (:func:`tidy_logging`).

On a terminal Kedro's rich console stays. Anywhere else (``kedro run ... > run.log``, a pipe, CI)
rich would lay every line out for an 80-column terminal it does not have, its message column
wrapping at ~40 characters: there each record is one plain line instead.

:class:`QuietNoise` drops the INFO lines that repeat at every run and that a user cannot act on
(Kedro's note on ``--async``, its logging-config and typed-parameter notices, kedro-mlflow's
resolver registration and its "Mlflow run '<pipeline>' has started", which names the run by the
pipeline while the project names it after the variant: ``MLflow run <id> tagged as variant``).
Warnings and errors always pass.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
PLAIN_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

#: INFO messages dropped (their beginnings)
NOISE_PREFIXES = (
    "Using synchronous mode for loading and saving data",
    "No typed parameter requirements found",
    "Registering new custom resolver",
    "Using 'conf/logging.yml' as logging configuration",
)


class QuietNoise(logging.Filter):
    """Drops the INFO (and DEBUG) records of :data:`NOISE_PREFIXES` and kedro-mlflow's run-started line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is not ours to drop
            return True
        if message.startswith(NOISE_PREFIXES):
            return False
        return not (message.startswith("Mlflow run '") and message.endswith("has started"))


class StdoutHandler(logging.StreamHandler):
    """Plain records on whatever ``sys.stdout`` is when they are written (where rich wrote)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)
        self.setFormatter(logging.Formatter(PLAIN_FORMAT, PLAIN_DATE_FORMAT))

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, value: TextIO) -> None:  # StreamHandler.__init__ sets it
        pass


def _is_terminal(stream: TextIO | None) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(callable(isatty) and isatty())
    except ValueError:  # a closed stream
        return False


def tidy_logging(stream: TextIO | None = None) -> None:
    """Apply this module to the handlers conf/logging.yml gave the root logger (Kedro's logging
    config accepts handler classes from ``logging`` and ``kedro.logging`` only): every handler gets
    :class:`QuietNoise`, and Kedro's rich console, when ``stream`` (default stdout) is not a
    terminal, becomes a :class:`StdoutHandler` with the same level and filters. Idempotent; called
    when the project's settings load and again when a Kedro context is created."""
    root = logging.getLogger()
    terminal = _is_terminal(sys.stdout if stream is None else stream)
    for handler in list(root.handlers):
        if not any(isinstance(f, QuietNoise) for f in handler.filters):
            handler.addFilter(QuietNoise())
        if not terminal and type(handler).__name__ == "RichHandler":
            plain = StdoutHandler()
            plain.setLevel(handler.level)
            for f in handler.filters:
                plain.addFilter(f)
            index = root.handlers.index(handler)
            root.removeHandler(handler)
            root.handlers.insert(index, plain)
