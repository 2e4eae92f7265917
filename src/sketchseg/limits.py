"""Size limits on everything a user or a data folder hands the project, in one place.

* ``MAX_IMAGE_PIXELS``: every image path (ingestion rasters, the ``sketchseg.api`` paths, PIL images
  and arrays, the app's drawings and uploads, the ``segment`` pipeline's folder) refuses a picture
  with more pixels than this, read from the file header before the pixels are decoded. PIL's own
  decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``) is set to the same number, so that no
  other code path of the process decodes a larger image silently.
* ``MAX_CAPTION_CHARS``: a caption typed into the app (or passed to the API's caption helpers)
  longer than this is refused; FS-COCO captions have a few dozen characters.
* ``DEFAULT_MAX_FILE_BYTES``: the ingestion's per-type file-size caps (conf ``data.max_file_bytes``
  overrides them); a larger file is quarantined before it is read.

Files are checked with :func:`regular_file_size` before they are opened: a FIFO, a device, a
directory, a symlink loop or a file that cannot be stat'ed is one clear problem, never a hang or a
traceback.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from PIL import Image

from sketchseg.errors import SketchSegDataError

__all__ = [
    "MAX_IMAGE_PIXELS", "MAX_CAPTION_CHARS", "DEFAULT_MAX_FILE_BYTES", "check_pixels", "check_caption_length",
    "file_problem", "regular_file_size",
]

#: the most pixels (width x height) of any image the project decodes: 40 megapixels (a 6300 x 6300
#: scan; an A4 page at 600 dpi is 35 MP). FS-COCO rasters are well under 1 MP.
MAX_IMAGE_PIXELS = 40_000_000
#: the longest caption (characters) the app and the API read; FS-COCO's longest is far shorter
MAX_CAPTION_CHARS = 2000
#: ingestion file-size caps (bytes) per file type; generous next to real FS-COCO files (captions
#: under 1 KB, vector sketches under 1 MB, rasters under 1 MB, FS-COCO-seg labels a few KB)
DEFAULT_MAX_FILE_BYTES: dict[str, int] = {
    "caption": 64 * 1024,
    "vector": 64 * 2**20,
    "raster": 50 * 2**20,
    "labels": 4 * 2**20,
}

# PIL warns above MAX_IMAGE_PIXELS and raises DecompressionBombError above twice that; our own
# checks refuse anything above MAX_IMAGE_PIXELS before decoding anyway.
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


def _mp(pixels: float) -> str:
    return f"{pixels / 1e6:.1f} MP" if pixels < 1e9 else f"{pixels / 1e9:.2f} GP"


def check_pixels(width: int, height: int, source: str, limit: int = MAX_IMAGE_PIXELS) -> None:
    """Raise ``SketchSegDataError`` naming ``source`` when ``width x height`` exceeds ``limit``."""
    n = int(width) * int(height)
    if n > int(limit):
        raise SketchSegDataError(
            f"{source}: {int(width)}x{int(height)} pixels ({_mp(n)}) is too large; the limit is {_mp(limit)} "
            f"({int(limit)} pixels): downscale the image")


def check_caption_length(caption: str, source: str = "caption", limit: int = MAX_CAPTION_CHARS) -> None:
    """Raise ``SketchSegDataError`` when ``caption`` is longer than ``limit`` characters."""
    if isinstance(caption, str) and len(caption) > limit:
        raise SketchSegDataError(
            f"{source}: {len(caption)} characters is too long; a caption may have at most {limit} characters")


def file_problem(path: str | os.PathLike[str], max_bytes: int | None = None) -> str | None:
    """Why ``path`` must not be read (None when it may): it cannot be stat'ed (missing, a symlink
    loop, no permission), it is no regular file (a directory, a FIFO, a device, a socket), it is not
    readable, or it is larger than ``max_bytes``. Never opens the file."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "cannot be read: a symbolic link loop (too many levels of symbolic links)"
        if exc.errno == errno.ENOENT:
            return "not found"
        return f"cannot be read: {exc.strerror or exc}"
    mode = st.st_mode
    if not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "not a regular file")
        return f"is {kind}, not a regular file"
    if not os.access(path, os.R_OK):
        return "cannot be read: permission denied"
    if max_bytes is not None and st.st_size > int(max_bytes):
        return f"is too large: {st.st_size} bytes, above the limit of {int(max_bytes)} bytes"
    return None


def regular_file_size(path: str | os.PathLike[str], what: str = "file", max_bytes: int | None = None) -> int:
    """The size of the regular file ``path``; ``SketchSegDataError`` naming it and the problem
    when :func:`file_problem` finds one."""
    why = file_problem(path, max_bytes)
    if why:
        raise SketchSegDataError(f"{Path(path)}: {what} {why}")
    return os.stat(path).st_size
