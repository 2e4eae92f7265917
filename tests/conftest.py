"""Shared test set-up: offline hub, NLTK data from ../shared, Kedro project copies in tmp dirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sketchseg.experiments import project

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
if not os.environ.get("NLTK_DATA"):
    _shared = REPO.parent / "shared" / "nltk_data"
    if _shared.is_dir():
        os.environ["NLTK_DATA"] = str(_shared)


@pytest.fixture(scope="session")
def nltk_data_path() -> str:
    path = os.environ.get("NLTK_DATA")
    if not path:
        pytest.fail("NLTK data not found: set NLTK_DATA or put shared/nltk_data beside the repository")
    return path


def copy_project(dest: Path) -> Path:
    """A runnable copy of the Kedro project (conf + pyproject) whose relative paths land in ``dest``."""
    return project.copy_project(REPO, dest)


@pytest.fixture()
def kedro_project(tmp_path, monkeypatch) -> Path:
    project = copy_project(tmp_path / "project")
    monkeypatch.chdir(project)
    return project


@pytest.fixture(scope="module")
def backbone() -> tuple:
    """The tiny random-weight CLIP of ``tests.tiny_model`` (seed 0): ``load_clip``'s ``(clip,
    tokenizer, mean_std)``, shared by the models a test module builds on it. Module scope, so a test
    that changes its weights (fine-tuned LayerNorms are the backbone's own) affects its module only."""
    import torch

    from sketchseg.model.clip_loader import load_clip
    from tests.tiny_model import tiny_cfg

    torch.manual_seed(0)
    return load_clip(tiny_cfg())
