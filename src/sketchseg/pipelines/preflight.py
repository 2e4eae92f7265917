"""What a ``kedro run`` checks before anything starts, kedro-mlflow's MLflow run included.

Called by the project hooks (``SketchSegHooks.before_pipeline_run``, ``tryfirst``: before
kedro-mlflow opens its run), so that a run refused for missing data leaves no FAILED run behind and
says in one line what is missing and how to get it:

* the values of the typed sections (``training``, ``evaluation``, ``model``, ``data.max_rejection_rate``):
  types and ranges, and the device when the pipeline trains or scores;
* the FS-COCO folders, when the pipeline ingests them;
* the caption parser's NLTK data, when the pipeline extracts categories from captions;
* the backbone weight file named by ``model.pretrained``, when the pipeline trains;
* every other free input of the pipeline stored in a file (a checkpoint, the splits of an earlier
  run ...), named with the pipeline that makes it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sketchseg.errors import SketchSegConfigError, SketchSegDataError

logger = logging.getLogger(__name__)

INGEST_NODE = "ingest_fscoco"
FIT_NODE = "fit_and_select_checkpoint"
EVALUATE_NODE = "evaluate_test_set"
PROMPTS_INPUT = "params:prompts"


def _node_names(pipeline: Any) -> set[str]:
    return {getattr(n, "name", "") for n in getattr(pipeline, "nodes", ())}


def needs_nltk(pipeline: Any) -> bool:
    """True when a node of ``pipeline`` extracts categories from captions (it reads ``params:prompts``)."""
    return any(PROMPTS_INPUT in getattr(n, "inputs", ()) for n in getattr(pipeline, "nodes", ()))


def check_nltk(params: Mapping[str, Any]) -> None:
    """The caption parser's NLTK data is findable (downloaded first when ``prompts.allow_download``
    and online); else one-line SketchSegDataError naming what is missing and the fix."""
    from sketchseg.text.nltk_setup import ensure_nltk_data

    prompts = dict(params.get("prompts") or {})
    ensure_nltk_data(prompts.get("nltk_data_path"), allow_download=bool(prompts.get("allow_download", True)))


def check_pretrained(params: Mapping[str, Any]) -> None:
    """``model.pretrained``, when it names a weight file, exists (relative to the working directory)."""
    from sketchseg.model.clip_loader import looks_like_path

    weights = (params.get("model") or {}).get("pretrained")
    if isinstance(weights, str) and looks_like_path(weights) and not Path(weights).expanduser().is_file():
        raise SketchSegDataError(
            f"model.pretrained = '{weights}' does not exist; the sample env's tiny CLIP is written by "
            "`kedro run --pipelines=pretrain_sample --env=sample` (bash scripts/demo.sh runs it)"
        )


def _filepath(dataset: Any) -> str | None:
    """The local file of a catalog dataset (through kedro-mlflow's artifact wrapper), if it has one."""
    for candidate in (dataset, getattr(dataset, "_dataset", None)):
        path = getattr(candidate, "_filepath", None) or getattr(candidate, "_path", None)
        if path:
            return str(path)
    return None


def missing_file_inputs(pipeline: Any, catalog: Any) -> list[tuple[str, str, Any]]:
    """``(dataset name, file, dataset)`` for the free inputs of ``pipeline`` stored in a local file
    that does not exist. Parameters, memory datasets and datasets whose existence cannot be told are
    skipped."""
    missing = []
    for name in sorted(pipeline.inputs()):
        if name == "parameters" or name.startswith("params:") or name not in catalog:
            continue
        try:
            dataset = catalog.get(name)
            path = _filepath(dataset)
            if path is None or type(dataset).__name__ == "MemoryDataset" or dataset.exists():
                continue
        except Exception as exc:  # noqa: BLE001 - a dataset that cannot tell: the run finds out itself
            logger.debug("pre-flight: cannot tell whether %s exists: %s", name, exc)
            continue
        missing.append((name, path, dataset))
    return missing


def check_values(params: Mapping[str, Any], *, uses_device: bool) -> None:
    """The values of the typed sections, whatever the pipeline: types and ranges of ``training``
    (``epochs=1.5``, ``learning_rate=-1``, ``precision=fp8``, ``device=banana``, a sub-key under a
    scalar), ``evaluation`` and ``model``, ``data.max_rejection_rate``; with ``uses_device`` (the
    pipeline trains or scores) the device must exist here (``cuda`` on a machine without one)."""
    from sketchseg.engine.config import EvalConfig, TrainConfig
    from sketchseg.engine.runtime import resolve_device
    from sketchseg.model.config import ModelConfig
    from sketchseg.model.errors import ModelConfigError

    training = params.get("training")
    if isinstance(training, Mapping):
        cfg = TrainConfig.from_dict(training)
        EvalConfig.from_params(params.get("evaluation"), training)
        if uses_device:
            resolve_device(str(cfg.device))
    if isinstance(params.get("model"), Mapping):
        try:
            ModelConfig.from_dict(params["model"])
        except ModelConfigError as exc:
            raise SketchSegConfigError(str(exc)) from exc
    rate = (params.get("data") or {}).get("max_rejection_rate") if isinstance(params.get("data"), Mapping) else None
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1):
        raise SketchSegConfigError(f"data.max_rejection_rate must be a number in [0, 1] (a fraction of the "
                                   f"sketches), got {rate!r}")


def check_run(pipeline: Any, catalog: Any, params: Mapping[str, Any], env: str | None = None) -> None:
    """Every check of the module docstring for a run of ``pipeline``; the first failure raises one line."""
    from sketchseg.data.fscoco import check_fscoco_root

    names = _node_names(pipeline)
    check_values(params, uses_device=bool(names & {FIT_NODE, EVALUATE_NODE}))
    if INGEST_NODE in names:
        check_fscoco_root((params.get("data") or {}).get("fscoco_root") or "")
    missing = missing_file_inputs(pipeline, catalog)
    if missing:
        name, path, dataset = missing[0]
        for candidate in (dataset, getattr(dataset, "_dataset", None)):  # the dataset's own words first
            if hasattr(candidate, "missing_error"):
                raise candidate.missing_error()
        from sketchseg.cli import input_not_found

        raise input_not_found(name, path, env=env)
    if needs_nltk(pipeline):
        check_nltk(params)
    if FIT_NODE in names:
        check_pretrained(params)
