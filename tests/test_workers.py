"""sketchseg.workers: the worker pool forks with the stop signals held, its workers take them as
plain processes do, and it ends its workers whatever ends the block."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal

import pytest

from sketchseg.workers import STOP_SIGNALS, worker_pool


def _worker_state(_: int) -> tuple[int, object, object, bool]:
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    return os.getpid(), signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT), signal.SIGTERM in blocked


def test_the_stop_signals_are_held_while_the_workers_are_forked():
    seen: list[set] = []
    armed = [True]  # a fork hook cannot be unregistered: it goes quiet after the test
    os.register_at_fork(before=lambda: seen.append(set(signal.pthread_sigmask(signal.SIG_BLOCK, []))) if armed else None)
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    try:
        with worker_pool(2) as pool:
            pool.map(abs, [1, 2])
    finally:
        armed.clear()
    assert len(seen) >= 2  # one fork per worker, all inside the held section
    assert all(set(STOP_SIGNALS) <= mask for mask in seen[-2:])
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before  # given back


class Stop(BaseException):
    """What the run guard's handler raises (RunInterrupted, a KeyboardInterrupt)."""


def _raise_stop(signum, frame):
    raise Stop(signum)


def test_a_signal_that_arrives_during_the_forks_stops_the_caller_after_them():
    fired: list[bool] = []
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    ran = False
    try:
        # the signal lands while fork runs its hooks (as logging's lock release does); quiet afterwards
        os.register_at_fork(before=lambda: (fired.append(True), os.kill(os.getpid(), signal.SIGTERM)) if not fired else None)
        with pytest.raises(Stop):  # without the held signals, Python ignores it inside the hook and goes on
            with worker_pool(2) as pool:
                ran = True
                pool.map(abs, [1])
    finally:
        fired.append(True)
        signal.signal(signal.SIGTERM, previous)
    assert not ran and mp.active_children() == []  # the block never ran; the workers were ended


def test_workers_take_sigterm_as_plain_processes_and_ignore_ctrl_c():
    with worker_pool(2) as pool:
        states = pool.map(_worker_state, range(4))
    for _, term, intr, term_blocked in states:
        assert term == signal.SIG_DFL and intr == signal.SIG_IGN and not term_blocked


def test_the_workers_end_with_the_block_whatever_ends_it():
    with pytest.raises(KeyError):
        with worker_pool(2) as pool:
            pids = {s[0] for s in pool.map(_worker_state, range(4))}
            raise KeyError("the run stops")
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
