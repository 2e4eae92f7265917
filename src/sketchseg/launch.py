"""Data-parallel training with torchrun: every process runs the SAME Kedro training node.

    torchrun --nproc-per-node=N -m sketchseg.launch [--env ENV] [--pipeline train]
             [--params "training.epochs=20,model.margin=0.5"] [--prepare-data] [--backend auto]

* All processes join one process group (nccl on CUDA, each on ``cuda:LOCAL_RANK``; gloo on CPU).
* The node's inputs (``sketch_splits``, ``sketch_prompts``, the parameters) come from the Kedro
  catalog; the data pipelines are NOT run by every process. They must have been run
  (``kedro run --pipelines=data --env ENV``), or ``--prepare-data`` lets rank 0 run them first
  while the others wait.
* Rank 0 runs ``--pipeline`` (default ``train``) from the training node on through an ordinary
  KedroSession: kedro-mlflow opens the MLflow run, logs the parameters, the per-epoch metrics and
  the artifacts, and the catalog writes the checkpoints, history and curves; for ``train`` rank 0
  then also scores the test split alone. The other ranks load the same inputs and call the same
  node function (``fit`` finds the process group and trains data parallel), then discard its
  outputs: they never log to MLflow nor write a file.
* ``training.batch_size`` is the GLOBAL batch (each process takes batch_size / N sketches per
  step), so a run on N GPUs equals a single-GPU run with the same parameters up to float rounding.

Without torchrun (no WORLD_SIZE in the environment) this is a plain single-process run.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from sketchseg.engine import distributed as dist_utils
from sketchseg.errors import SketchSegConfigError

logger = logging.getLogger("sketchseg.launch")

FIT_NODE = "fit_and_select_checkpoint"


def parse_params(text: str | None) -> dict[str, Any]:
    """``"a.b=1,c=x"`` (as ``kedro run --params``) -> ``{"a": {"b": 1}, "c": "x"}``; values are YAML."""
    out: dict[str, Any] = {}
    if not text:
        return out
    for item in _split_top_level(text):
        if not item.strip():
            continue
        if "=" not in item:
            raise SketchSegConfigError(f"--params item {item!r} is not key=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw.strip() else None
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise SketchSegConfigError(f"--params: {key!r} clashes with another key")
        node[leaf] = value
    return out


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside [...] or {...} (lists as values: ``a=[1, 2]``)."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sketchseg.launch", description=__doc__.splitlines()[0])
    p.add_argument("--env", default=None, help="Kedro environment (default: Kedro's, i.e. local)")
    p.add_argument("--pipeline", default="train",
                   help="pipeline that rank 0 runs from the training node on (train, training, __default__ ...)")
    p.add_argument("--params", default=None, help='runtime parameters, as kedro run --params: "a.b=1,c=2"')
    p.add_argument("--prepare-data", action="store_true",
                   help="rank 0 runs the data pipeline first (the other ranks wait)")
    p.add_argument("--backend", default="auto", choices=("auto", "nccl", "gloo"),
                   help="process-group backend (auto: nccl with CUDA, else gloo)")
    p.add_argument("--timeout-minutes", type=float, default=30.0,
                   help="collective timeout (rank 0 alone prepares data, validates its shard ...)")
    p.add_argument("--project-path", type=Path, default=Path.cwd(), help="the Kedro project (default: .)")
    return p.parse_args(argv)


def _session(project: Path, env: str | None, params: Mapping[str, Any]):  # noqa: ANN202 - KedroSession
    from kedro.framework.session import KedroSession

    return KedroSession.create(project_path=project, env=env, runtime_params=dict(params) or None)


def _fit_node(pipeline_name: str):  # noqa: ANN202 - a kedro Node
    from kedro.framework.project import pipelines

    if pipeline_name not in pipelines:
        raise SketchSegConfigError(f"no pipeline {pipeline_name!r}; known: {sorted(pipelines)}")
    nodes = [n for n in pipelines[pipeline_name].nodes if n.name == FIT_NODE]
    if not nodes:
        raise SketchSegConfigError(f"pipeline {pipeline_name!r} has no training node {FIT_NODE!r}")
    return nodes[0]


def _check_inputs(catalog: Any, node: Any, env: str | None) -> None:
    missing = [name for name in node.inputs if not name.startswith("params:") and not catalog.exists(name)]
    if missing:
        env_arg = f" --env={env}" if env else ""
        raise SketchSegConfigError(
            f"the training node's inputs {missing} do not exist yet; run `kedro run --pipelines=data{env_arg}` "
            "first, or pass --prepare-data so that rank 0 runs it before training"
        )


def _end_mlflow_runs() -> None:
    """kedro-mlflow may leave its run active in this process after a session: close it, so that
    the next session opens its own run instead of logging into the previous one."""
    import mlflow

    while mlflow.active_run() is not None:
        mlflow.end_run()


def run(args: argparse.Namespace) -> int:
    params = parse_params(args.params)
    info = dist_utils.init_from_env(args.backend, args.timeout_minutes)
    from kedro.framework.startup import bootstrap_project

    project = args.project_path.resolve()
    bootstrap_project(project)  # configures the project's logging
    if not info.is_main:  # one voice: the other ranks only warn
        for name in ("", "kedro", "sketchseg", "kedro_mlflow"):
            logging.getLogger(name).setLevel(logging.WARNING)
    node = _fit_node(args.pipeline)
    try:
        if info.is_main:
            if args.prepare_data:
                with _session(project, args.env, params) as session:
                    session.run(pipeline_names=["data"])
                _end_mlflow_runs()
            with _session(project, args.env, params) as session:  # also sets up MLflow's store first
                _check_inputs(session.load_context().catalog, node, args.env)
        dist_utils.barrier()
        if info.is_main:
            logger.info("rank 0 of %d: running pipeline %r from %s on", info.world_size, args.pipeline, FIT_NODE)
            with _session(project, args.env, params) as session:
                session.run(pipeline_names=[args.pipeline], from_nodes=[FIT_NODE])
            _end_mlflow_runs()
        else:
            with _session(project, args.env, params) as session:
                catalog = session.load_context().catalog
                _check_inputs(catalog, node, args.env)
                inputs = {name: catalog.load(name) for name in node.inputs}
                node.run(inputs)  # the outputs are rank 0's to save
            logger.info("rank %d done", info.rank)
    finally:
        dist_utils.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    return run(_parse_args(argv))


if __name__ == "__main__":  # pragma: no cover - CLI
    sys.exit(main())
