"""Locate (and, when online, fetch) the NLTK data the caption parser needs.

The parser needs three NLTK resources: the ``punkt_tab`` sentence/word tokenizer tables, the
``averaged_perceptron_tagger_eng`` POS tagger and the ``wordnet`` corpus (directory or zip).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import nltk

from sketchseg.errors import SketchSegDataError

logger = logging.getLogger(__name__)

DEFAULT_RESOURCES: tuple[str, ...] = ("punkt_tab", "averaged_perceptron_tagger_eng", "wordnet")

#: The NLTK data index (``nltk.downloader.Downloader.DEFAULT_URL``), probed before downloading.
NLTK_INDEX_URL = "https://raw.githubusercontent.com/nltk/nltk_data/gh-pages/index.xml"
PROBE_TIMEOUT_S = 2.0
DOWNLOAD_SOCKET_TIMEOUT_S = 60.0

# resource id -> NLTK resource paths accepted by ``nltk.data.find`` (any one suffices)
_RESOURCE_PATHS: dict[str, tuple[str, ...]] = {
    "punkt_tab": ("tokenizers/punkt_tab/english/", "tokenizers/punkt_tab"),
    "punkt": ("tokenizers/punkt", "tokenizers/punkt.zip"),
    "averaged_perceptron_tagger_eng": (
        "taggers/averaged_perceptron_tagger_eng",
        "taggers/averaged_perceptron_tagger_eng.zip",
    ),
    "averaged_perceptron_tagger": (
        "taggers/averaged_perceptron_tagger",
        "taggers/averaged_perceptron_tagger.zip",
    ),
    "wordnet": ("corpora/wordnet", "corpora/wordnet.zip"),
    "omw-1.4": ("corpora/omw-1.4", "corpora/omw-1.4.zip"),
}
_CATEGORIES = ("corpora", "tokenizers", "taggers", "stemmers", "chunkers", "models", "misc", "grammars")

FIX_HINT = (
    "Fix: point sketchseg at a folder holding the NLTK data (set `prompts.nltk_data_path` in "
    "conf/local/parameters.yml, or the NLTK_DATA environment variable, {sep}-separated), or, on a "
    "machine with internet access, run `python -m nltk.downloader punkt_tab "
    "averaged_perceptron_tagger_eng wordnet` (add `-d <folder>` to choose where it goes)."
)


def _candidate_paths(resource: str) -> tuple[str, ...]:
    """NLTK resource paths under which ``resource`` may be installed."""
    if resource in _RESOURCE_PATHS:
        return _RESOURCE_PATHS[resource]
    if "/" in resource:  # already a category/name path
        return (resource, f"{resource}.zip")
    return tuple(p for c in _CATEGORIES for p in (f"{c}/{resource}", f"{c}/{resource}.zip"))


def is_available(resource: str, paths: Sequence[str] | None = None) -> bool:
    """True when ``nltk.data.find`` locates ``resource`` on ``paths`` (default ``nltk.data.path``)."""
    for candidate in _candidate_paths(resource):
        try:
            nltk.data.find(candidate, paths=list(paths) if paths is not None else None)
            return True
        except (LookupError, ValueError, OSError):
            continue
    return False


def _is_online(url: str = NLTK_INDEX_URL, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Quick probe: does ``url`` (the NLTK data index) answer an HTTP HEAD within ``timeout`` s?

    A successful HTTP answer is required, not just a TCP connection (sandboxes and proxies may
    accept any connection, or answer 404 to everything). The request, DNS included (which ignores
    socket timeouts), runs in a daemon thread that is abandoned when it overruns, so this never
    hangs. Proxies from the environment are used, as ``nltk.download`` would.
    """
    result: list[bool] = []

    def probe() -> None:
        try:
            request = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - fixed https URL
                result.append(200 <= response.status < 400)
        except (OSError, ValueError):  # URLError, HTTPError (4xx/5xx from a proxy), timeouts
            result.append(False)

    thread = threading.Thread(target=probe, name="nltk-online-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _is_writable_dir(path: str) -> bool:
    """True when ``path`` is (or can be created as) a writable directory."""
    p = Path(path)
    if p.suffix == ".zip":
        return False
    if p.is_dir():
        return os.access(p, os.W_OK | os.X_OK)
    if p.exists():
        return False
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)


def _search_roots(data_path: str | os.PathLike[str] | None) -> list[str]:
    """``data_path`` followed by the entries of ``$NLTK_DATA``, expanded, without duplicates."""
    roots: list[str] = []
    if data_path is not None and str(data_path).strip():
        roots.append(str(Path(data_path).expanduser()))
    for entry in os.environ.get("NLTK_DATA", "").split(os.pathsep):
        if entry.strip():
            roots.append(str(Path(entry.strip()).expanduser()))
    return list(dict.fromkeys(roots))


def ensure_nltk_data(
    data_path: str | os.PathLike[str] | None = None,
    *,
    resources: Sequence[str] = DEFAULT_RESOURCES,
    allow_download: bool = True,
) -> list[str]:
    """Make the NLTK resources the caption parser needs findable.

    Prepends ``data_path`` and the ``$NLTK_DATA`` entries to ``nltk.data.path``, then checks every
    resource. Missing ones are downloaded (quietly, into the first writable search path) only when
    ``allow_download`` is true and the NLTK data host answers within 2 s.

    Returns
    -------
    list[str]
        The resulting ``nltk.data.path`` (a copy).

    Raises
    ------
    SketchSegDataError
        A resource is still missing; the message names it, the searched paths and the fix.
    """
    roots = _search_roots(data_path)
    if data_path is not None and roots and not Path(roots[0]).exists():
        logger.warning("NLTK data path %s does not exist", roots[0])
    for root in reversed(roots):
        while root in nltk.data.path:
            nltk.data.path.remove(root)
        nltk.data.path.insert(0, root)

    missing = [r for r in resources if not is_available(r)]
    if missing and allow_download:
        if _is_online():
            target = next((p for p in nltk.data.path if _is_writable_dir(p)), None)
            if target is None:
                logger.warning("no writable NLTK data folder among %s; cannot download", nltk.data.path)
            else:
                _download(missing, target)
                missing = [r for r in resources if not is_available(r)]
        else:
            logger.info("NLTK data index %s unreachable; not downloading %s", NLTK_INDEX_URL, missing)

    if missing:
        searched = "\n  ".join(str(p) for p in nltk.data.path)
        raise SketchSegDataError(
            f"NLTK resource(s) missing: {', '.join(missing)} (wordnet may be corpora/wordnet or "
            f"corpora/wordnet.zip). Searched:\n  {searched}\n"
            + FIX_HINT.format(sep=repr(os.pathsep))
        )
    logger.debug("NLTK data ready (%s); search path %s", ", ".join(resources), nltk.data.path)
    return list(nltk.data.path)


def _download(resources: Sequence[str], target: str) -> None:
    """Quietly download ``resources`` into ``target``, with a socket timeout so it cannot hang forever."""
    Path(target).mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_SOCKET_TIMEOUT_S)
    try:
        for resource in resources:
            logger.info("downloading NLTK resource %s into %s", resource, target)
            try:
                ok = nltk.download(resource, download_dir=target, quiet=True, raise_on_error=False)
            except Exception as exc:  # noqa: BLE001 - the downloader raises many types; we re-check below
                logger.warning("downloading NLTK resource %s failed: %s", resource, exc)
                continue
            if not ok:
                logger.warning("downloading NLTK resource %s into %s failed", resource, target)
    finally:
        socket.setdefaulttimeout(previous)
