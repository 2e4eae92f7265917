"""Run project pipelines through a KedroSession (Kedro's runner, hooks and kedro-mlflow included)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

# A very small sample so that the pipelines run in seconds.
TINY = {
    "sample.n_participants": 5,
    "sample.sketches_per_participant": 6,
    "splits.test_participants": [1],
    "splits.val_per_participant": 2,
    "training.epochs": 1,
    "training.batch_size": 8,
    # random tiny-CLIP weights: no pre-training run needed (test_train_pipeline_end_to_end runs the
    # sample env as configured: pretrain_sample writes the weights model.pretrained reads)
    "model.pretrained": None,
    "model.allow_random_init": True,
    # the sample's tiny-CLIP pre-training (pretrain_sample), cut to a smoke run
    "pretrain.steps": 2,
    "pretrain.batch_size": 16,
    "pretrain.pool_size": 64,
    "pretrain.warmup_steps": 1,
    "pretrain.eval_per_category": 1,
    "pretrain.eval_scenes": 4,
}


def nested(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}`` (what ``kedro run --params a.b=1`` passes on)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def run(project: Path, pipeline: str, env: str = "sample", params: dict[str, Any] | None = None) -> dict:
    bootstrap_project(project)
    try:
        with KedroSession.create(
            project_path=project, env=env, runtime_params=nested({**TINY, **(params or {})})
        ) as session:
            return session.run(pipeline_names=[pipeline])
    finally:
        while mlflow.active_run() is not None:  # a failed run must not leak into the next test
            mlflow.end_run()
