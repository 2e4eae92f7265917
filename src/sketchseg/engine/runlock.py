"""One training run at a time per output folder: a lock file next to the training state.

Two ``kedro run --pipelines=train`` side by side in one project would write the same checkpoints,
training state and test metrics, whichever finishes last winning silently. The training pipeline
therefore takes ``<training.state_path folder>/.sketchseg-train.lock`` (JSON: pid, host, start time,
MLflow run id) before any node writes, and releases it at the end, on failure and at interpreter exit
(Ctrl-C). A second run refuses at start, naming the holder. A lock left by a dead process (its pid
no longer alive on this host) is reported and taken over; a lock of another host is never taken
over (delete it by hand when that run is surely gone).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from sketchseg.errors import SketchSegConfigError
from sketchseg.model import fileio

logger = logging.getLogger(__name__)

LOCK_NAME = ".sketchseg-train.lock"


def lock_path_for(state_path: str | Path | None, default_folder: str | Path = "data/06_models") -> Path:
    """The lock file of a run whose training state is ``state_path``."""
    folder = Path(state_path).parent if state_path else Path(default_folder)
    return folder / LOCK_NAME


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


def describe_holder(info: dict[str, Any]) -> str:
    run = f", MLflow run {info['mlflow_run_id']}" if info.get("mlflow_run_id") else ""
    return f"pid {info.get('pid')} on {info.get('host')} since {info.get('started')}{run}"


class RunLock:
    """The training lock of one output folder (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
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
        info = {"pid": os.getpid(), "host": socket.gethostname(),
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
            if same_host and (pid == os.getpid() or not pid_alive(pid)):
                logger.warning("training lock %s was left by %s, which is no longer running: taking it over",
                               self.path, describe_holder(holder))
                self.path.unlink(missing_ok=True)
                continue
            raise SketchSegConfigError(
                f"another training run writes to {self.path.parent} ({describe_holder(holder)}): wait for it to "
                f"end, or give this run its own training.state_path and checkpoints (delete {self.path} only if "
                "that run is surely gone)"
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
