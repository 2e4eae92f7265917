"""Runnable copies of the Kedro project and the environment of ``kedro`` subprocesses.

Used by the experiment grid (one ``kedro run`` per variant), ``benchmarks/sample_learning.py``
(fresh copies of the sample run) and the tests (project copies in temporary folders).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

DATA_LAYERS = ("01_raw", "02_intermediate", "03_primary", "04_feature", "05_model_input", "06_models",
               "07_model_output", "08_reporting")


def copy_project(repo: str | Path, dest: str | Path, *, replace: bool = False) -> Path:
    """A runnable copy of the project at ``repo`` (pyproject, telemetry consent, ``conf`` without
    ``conf/local``) whose relative data paths land in ``dest``; the package itself is installed.
    ``replace`` removes an existing ``dest`` first."""
    repo, dest = Path(repo), Path(dest)
    if replace and dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(repo / "pyproject.toml", dest / "pyproject.toml")
    if (repo / ".telemetry").exists():
        shutil.copy(repo / ".telemetry", dest / ".telemetry")
    shutil.copytree(repo / "conf", dest / "conf", ignore=shutil.ignore_patterns("local"))
    (dest / "conf" / "local").mkdir(exist_ok=True)
    (dest / "src").mkdir(exist_ok=True)
    for layer in DATA_LAYERS:
        (dest / "data" / layer).mkdir(parents=True, exist_ok=True)
    return dest


def kedro_subprocess_env(nltk_fallback: str | Path | None = None, *, offline: bool = False) -> dict[str, str]:
    """This process's environment for a ``kedro`` subprocess: no telemetry prompt, a
    non-interactive plot backend, ``NLTK_DATA`` from ``nltk_fallback`` when unset, and with
    ``offline`` the Hugging Face hub off (``HF_HUB_OFFLINE=1``) unless the caller set it; otherwise
    the hub setting is the user's own (a grid child downloads the openai weights as ``kedro run``)."""
    from sketchseg.run_guard import tracking_uri_from_environment

    env = dict(os.environ)
    if env.get("MLFLOW_TRACKING_URI") and tracking_uri_from_environment() is None:
        del env["MLFLOW_TRACKING_URI"]  # this process's MLflow exported it, not the user
    if offline:
        env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    env.setdefault("MPLBACKEND", "Agg")
    if not env.get("NLTK_DATA") and nltk_fallback is not None and Path(nltk_fallback).is_dir():
        env["NLTK_DATA"] = str(nltk_fallback)
    return env
