"""Progress of long work, seen anywhere: :func:`progress` wraps an iterable (or counts ``update``
calls) and shows a tqdm bar with rate and ETA when stderr is a terminal; otherwise (CI, ``nohup``,
a log file, a notebook) it logs a line with step / total, rate and ETA at the start, at least
every ``interval`` seconds while steps arrive, and at the end. A step is never interrupted: a
single step longer than the interval delays the next line until it ends.

The interval defaults to 30 s; ``SKETCHSEG_PROGRESS_SECONDS`` changes it for a whole run.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Callable, Iterable, Iterator

from tqdm import tqdm

logger = logging.getLogger(__name__)

__all__ = ["Progress", "progress", "DEFAULT_INTERVAL", "INTERVAL_ENV"]

DEFAULT_INTERVAL = 30.0
INTERVAL_ENV = "SKETCHSEG_PROGRESS_SECONDS"


def _stderr_is_terminal() -> bool:
    try:
        return bool(sys.stderr is not None and sys.stderr.isatty())
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def _interval(value: float | None) -> float:
    if value is not None:
        return float(value)
    try:
        return float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL))
    except ValueError:
        logger.warning("%s=%r is not a number of seconds; using %g", INTERVAL_ENV, os.environ[INTERVAL_ENV],
                       DEFAULT_INTERVAL)
        return DEFAULT_INTERVAL


def _clock_text(seconds: float) -> str:
    seconds = int(round(max(seconds, 0.0)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """What :func:`progress` returns: iterate over it, or call :meth:`update` (and :meth:`close`,
    or use it as a context manager) for work that is not a loop over one iterable."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", enabled: bool = True, leave: bool = True, interval: float | None = None,
                 terminal: bool | None = None, clock: Callable[[], float] = time.monotonic,
                 log: logging.Logger | None = None) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.interval, self.clock, self.log = _interval(interval), clock, log or logger
        self.n = 0
        self.postfix = ""
        self._bar: tqdm | None = None
        self._started = self._closed = False
        terminal = _stderr_is_terminal() if terminal is None else terminal
        self.mode = "off" if not enabled else ("bar" if terminal else "log")
        if self.mode == "bar":
            self._bar = tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True)
        elif self.mode == "log":
            self._start()

    # ------------------------------------------------------------------------- the log lines
    def _start(self) -> None:
        self._t0 = self._last = self.clock()
        self._started = True
        self._emit("started")

    def _emit(self, state: str = "") -> None:
        elapsed = self.clock() - self._t0
        total = f"/{self.total}" if self.total is not None else ""
        pct = f" ({100.0 * self.n / self.total:.0f}%)" if self.total else ""
        rate = self.n / elapsed if elapsed > 0 and self.n else 0.0
        if rate >= 1 or rate == 0:
            rate_text = f"{rate:.2f} {self.unit}/s" if rate else f"? {self.unit}/s"
        else:
            rate_text = f"{1.0 / rate:.2f} s/{self.unit}"
        if self.total is not None and rate > 0:
            eta = _clock_text((self.total - self.n) / rate)
        else:
            eta = "00:00" if self.total is not None and self.n >= self.total else "?"
        extra = f", {self.postfix}" if self.postfix else ""
        tail = f" ({state})" if state else ""
        self.log.info("%s: %d%s %s%s, %s, elapsed %s, ETA %s%s%s", self.desc or "progress", self.n, total,
                      self.unit, pct, rate_text, _clock_text(elapsed), eta, extra, tail)
        self._last = self.clock()

    # ------------------------------------------------------------------------- the interface
    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("this Progress counts update() calls; it has no iterable")
        if self._bar is not None:
            yield from self._bar
            return
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        if self.total is None:
            raise TypeError("progress over an iterable without a length")
        return int(self.total)

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)
            return
        self.n += n
        if self.mode == "log" and self.clock() - self._last >= self.interval and (self.total is None or self.n < self.total):
            self._emit()

    def set_postfix(self, **values: Any) -> None:
        if self._bar is not None:
            self._bar.set_postfix(**values)
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def set_postfix_str(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(text)
        self.postfix = str(text)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "log" and self._started:
            done = self.total is None or self.n >= self.total
            self._emit("done" if done else "stopped")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             enabled: bool = True, leave: bool = True, interval: float | None = None, terminal: bool | None = None,
             clock: Callable[[], float] = time.monotonic) -> Progress:
    """Progress over ``iterable`` (or of ``total`` steps counted by ``update``): a tqdm bar when
    stderr is a terminal (``terminal`` overrides the check), else log lines every ``interval``
    seconds (default 30, or ``SKETCHSEG_PROGRESS_SECONDS``); nothing when not ``enabled``.
    ``leave=False`` clears a finished bar (inner loops); the log lines stay."""
    return Progress(iterable, total=total, desc=desc, unit=unit, enabled=enabled, leave=leave, interval=interval,
                    terminal=terminal, clock=clock)
