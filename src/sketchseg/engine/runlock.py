"""One run at a time per output folder: a lock file in the variant's folder.

Two runs of one experiment variant side by side would write the same checkpoints, training state
and test metrics, whichever finishes last winning silently. Every pipeline that writes a model's
files (train, training, evaluation, report) therefore takes ``<folder>/.sketchseg-train.lock``
(JSON: pid, host, start time, MLflow run id) in the variant's model folder
(``data/06_models/<experiment.output_folder>/``, which also names the variant's folders under
07_model_output and 08_reporting), and in ``training.state_path``'s folder when that lies elsewhere,
before any node writes; it releases them at the end, on failure and at interpreter exit (Ctrl-C).
Runs of different variants write to different folders and do not wait for each other. A second
run of the same folder refuses at start, naming the holder. A lock left by a dead process (its pid
no longer alive on this host, or alive but started at another time than the holder: the pid was
reused by a later process) is reported and taken over, and ``on_stale`` is told (the Kedro hook
ends that run's MLflow run KILLED: a ``kill -9`` left it RUNNING); a lock of another host is never
taken over (delete it by hand when that run is surely gone).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

from sketchseg.errors import SketchSegConfigError
from sketchseg.model import fileio

logger = logging.getLogger(__name__)

LOCK_NAME = ".sketchseg-train.lock"


def lock_path_for(folder: str | Path) -> Path:
    """The lock file of the runs that write to ``folder``."""
    return Path(folder) / LOCK_NAME


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), or None when that cannot
    be read (no such process, no /proc). With the pid it names one process: a pid is reused, a
    (pid, start) pair is not."""
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text(encoding="utf-8", errors="replace")
    except (OSError, ValueError):
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # after the command name, which may hold spaces
    return fields[19] if len(fields) > 19 else None  # field 22 of proc(5): starttime


def holder_gone(holder: dict[str, Any], host: str) -> bool:
    """Whether the process that wrote ``holder`` on this ``host`` has ended: its pid is not alive,
    or is alive but started at another time (a later process got the pid)."""
    if holder.get("host") != host:
        return False  # another machine's process: cannot be checked from here
    pid = int(holder.get("pid") or 0)
    if not pid_alive(pid):
        return True
    recorded, now = holder.get("pid_start"), process_start(pid)
    return bool(recorded) and now is not None and str(recorded) != now


def describe_holder(info: dict[str, Any]) -> str:
    run = f", MLflow run {info['mlflow_run_id']}" if info.get("mlflow_run_id") else ""
    return f"pid {info.get('pid')} on {info.get('host')} since {info.get('started')}{run}"


class RunLock:
    """The training lock of one output folder (see the module docstring)."""

    def __init__(self, path: str | Path, on_stale: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.path = Path(path)
        self.on_stale = on_stale  # told about a lock taken over from a process that has ended
        self.info: dict[str, Any] = {}
        self.held = False

    def _write_new(self, info: dict[str, Any]) -> bool:
        """Create the lock with ``info`` atomically; False when it exists already."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = fileio.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(info, f)
            try:
                os.link(tmp, self.path)  # fails when the lock exists: no window for a second writer
            except FileExistsError:
                return False
            return True
        finally:
            os.unlink(tmp)

    def read(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def acquire(self, run_id: str | None = None) -> None:
        """Take the lock, or raise :class:`SketchSegConfigError` naming the run that holds it."""
        info = {"pid": os.getpid(), "pid_start": process_start(os.getpid()) or "", "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "mlflow_run_id": run_id or ""}
        for _ in range(3):
            if self._write_new(info):
                self.info, self.held = info, True
                atexit.register(self.release)
                return
            holder = self.read()
            if holder is None:  # released in between: try again
                continue
            if not holder:
                raise SketchSegConfigError(
                    f"training lock {self.path} is unreadable: another training run may be writing to this folder; "
                    "delete the file if no run is going on"
                )
            same_host = holder.get("host") == info["host"]
            pid = int(holder.get("pid") or 0)
            if (same_host and pid == os.getpid() and holder.get("pid_start") in (None, "", info["pid_start"])) \
                    or holder_gone(holder, info["host"]):
                logger.warning("training lock %s was left by %s, which is no longer running: taking it over",
                               self.path, describe_holder(holder))
                self.path.unlink(missing_ok=True)
                if self.on_stale is not None and pid != os.getpid():
                    self.on_stale(holder)
                continue
            raise SketchSegConfigError(
                f"another training run writes to {self.path.parent} ({describe_holder(holder)}): wait for it to "
                f"end, or run another experiment.variant (its own folder; or set experiment.output_folder) "
                f"(delete {self.path} only if that run is surely gone)"
            )
        raise SketchSegConfigError(f"could not take the training lock {self.path}; try again")

    def update(self, **fields: Any) -> None:
        """Rewrite the held lock with more details (e.g. the MLflow run id once the run has one)."""
        if not self.held:
            return
        self.info.update(fields)
        fd, tmp = fileio.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self.info, f)
        os.replace(tmp, self.path)

    def release(self) -> None:
        """Remove the lock if this process holds it (idempotent)."""
        if not self.held:
            return
        self.held = False
        atexit.unregister(self.release)
        holder = self.read()
        if holder is not None and holder.get("pid") == self.info.get("pid") \
                and holder.get("started") == self.info.get("started"):
            self.path.unlink(missing_ok=True)
