"""Locate (and, when online, fetch) the NLTK data the caption parser needs.

The parser needs three NLTK resources: the ``punkt_tab`` sentence/word tokenizer tables, the
``averaged_perceptron_tagger_eng`` POS tagger and the ``wordnet`` corpus (directory or zip).

They are searched, in order, in the configured ``prompts.nltk_data_path``, the ``$NLTK_DATA``
folders, the project's own ``data/00_nltk`` (git-ignored; ``scripts/setup.sh`` fills it from
``../shared/nltk_data`` when present, else downloads it when online; found from the working
directory's project and from the source tree this package runs from, so no environment variable is
needed) and NLTK's default folders (``~/nltk_data`` ...). ``python -m sketchseg.text.nltk_setup``
fills ``data/00_nltk`` (what ``scripts/setup.sh`` runs when no shared copy exists).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
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

#: the project's own NLTK data folder, relative to the project root (git-ignored, filled by scripts/setup.sh)
PROJECT_NLTK_DIR = Path("data") / "00_nltk"

FIX_HINT = (
    "fix: run `bash scripts/setup.sh` (copies ../shared/nltk_data into data/00_nltk, or downloads "
    "the data there when online), or point `prompts.nltk_data_path` (conf/local/parameters.yml) or "
    "NLTK_DATA at a folder holding it"
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


def _project_root(start: Path) -> Path | None:
    """The Kedro project folder (``pyproject.toml`` beside ``conf/``) at or above ``start``."""
    for base in (start, *start.parents):
        if (base / "pyproject.toml").is_file() and (base / "conf").is_dir():
            return base
    return None


def project_nltk_dirs() -> list[str]:
    """The project-local NLTK data folders: ``data/00_nltk`` of the project in (or above) the
    working directory, then of the source tree this package is imported from (an editable install
    run from elsewhere); existing or not (the first is where :func:`ensure_nltk_data` downloads)."""
    roots = [_project_root(Path.cwd()), _project_root(Path(__file__).resolve().parent)]
    return list(dict.fromkeys(str(r / PROJECT_NLTK_DIR) for r in roots if r is not None))


def _search_roots(data_path: str | os.PathLike[str] | None) -> list[str]:
    """``data_path``, the entries of ``$NLTK_DATA``, then the project-local folders, expanded,
    without duplicates."""
    roots: list[str] = []
    if data_path is not None and str(data_path).strip():
        roots.append(str(Path(data_path).expanduser()))
    for entry in os.environ.get("NLTK_DATA", "").split(os.pathsep):
        if entry.strip():
            roots.append(str(Path(entry.strip()).expanduser()))
    roots += project_nltk_dirs()
    return list(dict.fromkeys(roots))


def ensure_nltk_data(
    data_path: str | os.PathLike[str] | None = None,
    *,
    resources: Sequence[str] = DEFAULT_RESOURCES,
    allow_download: bool = True,
) -> list[str]:
    """Make the NLTK resources the caption parser needs findable.

    Prepends ``data_path``, the ``$NLTK_DATA`` entries and the project-local ``data/00_nltk`` to
    ``nltk.data.path``, then checks every resource. Missing ones are downloaded (quietly, into
    ``data_path`` when given, else the project-local folder, else the first writable search path)
    only when ``allow_download`` is true and the NLTK data host answers within 2 s.

    Returns
    -------
    list[str]
        The resulting ``nltk.data.path`` (a copy).

    Raises
    ------
    SketchSegDataError
        A resource is still missing; the message (one line) names it, the folders searched and the fix.
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
            preferred = [str(Path(data_path).expanduser())] if data_path is not None and str(data_path).strip() else []
            preferred += project_nltk_dirs()
            target = next((p for p in [*preferred, *nltk.data.path] if _is_writable_dir(p)), None)
            if target is None:
                logger.warning("no writable NLTK data folder among %s; cannot download", nltk.data.path)
            else:
                _download(missing, target)
                missing = [r for r in resources if not is_available(r)]
        else:
            logger.info("NLTK data index %s unreachable; not downloading %s", NLTK_INDEX_URL, missing)

    if missing:
        raise SketchSegDataError(missing_message(missing, roots))
    logger.debug("NLTK data ready (%s); search path %s", ", ".join(resources), nltk.data.path)
    return list(nltk.data.path)


def missing_message(missing: Sequence[str], roots: Sequence[str]) -> str:
    """One line: the missing resources, the folders searched (ours, then NLTK's defaults counted) and the fix."""
    cwd = Path.cwd()

    def show(p: str) -> str:
        try:
            return str(Path(p).relative_to(cwd))
        except ValueError:
            return p

    others = [p for p in nltk.data.path if p not in roots]
    searched = ", ".join(show(p) for p in roots)
    if others:
        searched += f"{', ' if searched else ''}and NLTK's {len(others)} default folders (~/nltk_data ...)"
    return f"NLTK data missing: {', '.join(missing)} (searched {searched}); {FIX_HINT}"


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


def main() -> int:
    """``python -m sketchseg.text.nltk_setup``: make the NLTK data findable, downloading it into the
    project's ``data/00_nltk`` when online; one line on success or failure."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        ensure_nltk_data(None, allow_download=True)
    except SketchSegDataError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    found = {r: next((p for p in nltk.data.path if is_available(r, [p])), "?") for r in DEFAULT_RESOURCES}
    print("NLTK data ready: " + ", ".join(f"{r} in {p}" for r, p in found.items()))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
