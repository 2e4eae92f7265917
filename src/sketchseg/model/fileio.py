"""Temporary files for atomic writes that end up with the permissions of any other new file.

``tempfile.mkstemp`` creates its file 0600 (owner only), so a checkpoint written through it and
renamed into place stayed unreadable by the group and others, unlike every file ``open()`` makes
(``0666 & ~umask``, 0644 under the usual umask 022). :func:`mkstemp` gives the temporary file that
usual mode, and :func:`atomic_path` writes a file atomically with it (a library that replaces the
temporary file it is given, as safetensors' ``save_file`` does, gets the mode set again before the
rename). Every atomic write of the project (checkpoints, converted weights, the training state, the
run lock) goes through them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def current_umask() -> int:
    """This process's umask, read without changing it where Linux tells it (/proc/self/status);
    elsewhere by setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: ``0o666 & ~umask``."""
    return 0o666 & ~current_umask()


def mkstemp(*, dir: str | os.PathLike[str], prefix: str = "", suffix: str = "") -> tuple[int, str]:  # noqa: A002
    """``tempfile.mkstemp`` in ``dir``, with the file's mode set to :func:`new_file_mode` (not 0600)."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=str(dir))
    try:
        os.fchmod(fd, new_file_mode())
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, hidden: bool = False) -> Iterator[str]:
    """A temporary file beside ``path`` to write; renamed over ``path`` with :func:`new_file_mode`
    when the block ends without an error, removed otherwise. ``hidden`` starts its name with a dot."""
    path = Path(path)
    fd, tmp = mkstemp(dir=path.parent, prefix=f"{'.' if hidden else ''}{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
