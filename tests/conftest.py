"""Shared test set-up: offline hub, NLTK data from ../shared, Kedro project copies in tmp dirs."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sketchseg.experiments import project

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# runs go to each test project's own store: the variable would win over conf (sketchseg.run_guard)
os.environ.pop("MLFLOW_TRACKING_URI", None)
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


def load_benchmark(name: str):
    """The script ``benchmarks/<name>.py`` as a module (registered in ``sys.modules``: dataclasses
    look their module up)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def copy_project(dest: Path) -> Path:
    """A runnable copy of the Kedro project (conf + pyproject) whose relative paths land in ``dest``."""
    return project.copy_project(REPO, dest)


@pytest.fixture()
def kedro_project(tmp_path, monkeypatch) -> Path:
    project = copy_project(tmp_path / "project")
    monkeypatch.chdir(project)
    return project


@dataclass(frozen=True)
class GeneratedSample:
    """A generated FS-COCO tree (``root/fscoco``) and its FS-COCO-seg annotations (``root/fscoco-seg``)."""

    root: Path
    summary: dict[str, Any]

    @property
    def fscoco(self) -> Path:
        return self.root / "fscoco"

    @property
    def fscoco_seg(self) -> Path:
        return self.root / "fscoco-seg"

    def copy(self, dest: Path) -> Path:
        """A private copy of the whole tree at ``dest`` (to corrupt or change), returned."""
        shutil.copytree(self.root, dest)
        return dest


@pytest.fixture(scope="session")
def make_sample(tmp_path_factory) -> Callable[..., GeneratedSample]:
    """Factory of generated samples, each written once per session per argument set:
    ``make_sample(n_participants, sketches_per_participant, seed=..., **generate_sample_kwargs)``.
    The tree is shared: read it, or ``.copy(tmp_path / ...)`` it to change it."""
    from sketchseg.data.sample import generate_sample

    cache: dict[tuple, GeneratedSample] = {}

    def make(n_participants: int, sketches_per_participant: int, *, seed: int = 0, **kwargs: Any) -> GeneratedSample:
        kwargs.setdefault("progress", False)
        key = (int(n_participants), int(sketches_per_participant), int(seed),
               tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in kwargs.items())))
        if key not in cache:
            root = tmp_path_factory.mktemp(f"sample-{n_participants}x{sketches_per_participant}-s{seed}")
            summary = generate_sample(root / "fscoco", root / "fscoco-seg", n_participants=n_participants,
                                      sketches_per_participant=sketches_per_participant, seed=seed, **kwargs)
            cache[key] = GeneratedSample(root, summary)
        return cache[key]

    return make
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


def train_val_tables(make_sample: Callable[..., Any], nltk_data_path: str, sketches_per_participant: int) -> tuple:
    """(train with prompts, val) of a small generated sample (4 participants, participant 1 tests,
    2 val sketches each, seed 5), as the training pipeline's data nodes make them."""
    from sketchseg.data.fscoco import ingest_fscoco
    from sketchseg.data.splits import make_protocol_splits
    from sketchseg.text.nltk_setup import ensure_nltk_data
    from sketchseg.text.nouns import extract_table

    sample = make_sample(4, sketches_per_participant, seed=5, test_participants=(1,), val_per_participant=2,
                         write_photos=False)
    manifest, _ = ingest_fscoco(sample.fscoco, sample.fscoco_seg, max_rejection_rate=0.0, progress=False)
    splits = make_protocol_splits(manifest, test_participants=[1], val_per_participant=2, seed=5)
    ensure_nltk_data(nltk_data_path, allow_download=False)
    prompts, _ = extract_table(splits[["sketch_id", "caption"]])
    train = splits[splits["split"] == "train"].merge(prompts, on="sketch_id")
    return train, splits[splits["split"] == "val"].reset_index(drop=True)
