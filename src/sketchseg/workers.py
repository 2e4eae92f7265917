"""Worker processes that a signal never leaves half-started or running on their own.

:func:`worker_pool` is a ``multiprocessing`` pool (fork where the platform has it) for the
data-parallel steps (ingestion's file checks, the sample generator):

* the stop signals (SIGINT, SIGTERM, SIGHUP) are **blocked in the parent while it forks the
  workers** and delivered right after. Python runs a signal handler between bytecodes, so without
  this a SIGTERM that lands while ``fork`` runs its ``os.register_at_fork`` hooks (logging's lock
  release among them) raises the run guard's ``RunInterrupted`` *inside a fork hook*, where Python
  prints "Exception ignored in ..." and carries on: the run went on to FINISHED, or died later of a
  broken pool (issue #27);
* each worker unblocks them and takes the default action for SIGTERM / SIGHUP and ignores SIGINT
  (Ctrl-C reaches the whole process group: the parent stops the run, the workers must not print
  one KeyboardInterrupt traceback each);
* leaving the ``with`` block for any reason (an error, Ctrl-C, SIGTERM) terminates the workers
  (``Pool.__exit__``): no worker goes on working for a run that has stopped.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
from collections.abc import Iterator
from multiprocessing.pool import Pool

__all__ = ["STOP_SIGNALS", "worker_pool"]

#: the signals that stop a run (a terminal's Ctrl-C, ``kill``, a closed terminal or SSH session)
STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def _worker_init() -> None:
    """In each worker: the default action for SIGTERM / SIGHUP, SIGINT ignored, nothing blocked."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN if sig == signal.SIGINT else signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@contextlib.contextmanager
def _stop_signals_blocked() -> Iterator[None]:
    """Hold the stop signals while the block runs; a pending one is delivered when it ends."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no fork, nothing to hold
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[Pool]:
    """A pool of ``workers`` processes, all started before the block runs (signals held meanwhile),
    terminated when it ends."""
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("fork" if "fork" in methods else None)
    pool: Pool | None = None
    try:
        with _stop_signals_blocked():
            pool = ctx.Pool(int(workers), initializer=_worker_init)  # forks every worker now
        # a signal held during the forks is delivered here: its exception leaves with the workers ended
        yield pool
    finally:
        if pool is not None:
            pool.terminate()  # the workers stop whatever they were doing (and are joined)
