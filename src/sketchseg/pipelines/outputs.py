"""The files that belong to one trained model, and the checks that keep them to their variant.

Every file of a trained model (checkpoints, training state, history, test results, report) lies
in its variant's folder, ``experiment.output_folder`` (the catalog's ``${output_folder:}``:
``data/06_models/<folder>/best.safetensors``, ``data/08_reporting/<folder>/test_metrics.json`` ...).
The hooks (``sketchseg.hooks``) use this module to

* take the run lock in that folder (and in ``training.state_path``'s, when it lies elsewhere) for
  every pipeline that writes a model's files: two runs of one variant exclude each other, runs of
  different variants write to different folders;
* refuse a training run whose checkpoint files hold another variant's model (a catalog or
  ``experiment.output_folder`` pointed at another variant's folder), naming the file and variant;
* remove the previous model's test results when a new checkpoint is written, so an interrupted
  evaluation never leaves them beside the new model.

Plain Python over the resolved catalog configuration (``conf_catalog``), no Kedro import.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sketchseg.errors import SketchSegConfigError

logger = logging.getLogger(__name__)

#: checkpoints of the model; their metadata names the variant that trained them
CHECKPOINTS = ("best_checkpoint", "last_checkpoint")
#: the test results of the model's checkpoint (the evaluation pipeline's outputs)
TEST_RESULTS = ("test_metrics", "test_per_sketch", "test_per_category")
#: outputs whose pipeline writes a model's files: such a pipeline takes the folder's run lock
MODEL_OUTPUTS = (*CHECKPOINTS, "training_history", *TEST_RESULTS, "report_summary")


def check_output_folder(value: Any) -> str:
    """``experiment.output_folder`` as a relative folder name (``ours``, ``sample/wo_vv``); one line
    naming the problem when it would leave the data layer's folder or is empty."""
    text = str(value if value is not None else "").strip().replace("\\", "/").rstrip("/")
    parts = text.split("/")
    if not text or text.startswith(("/", "~")) or any(p in ("", ".", "..") for p in parts) \
            or any(ch in text for ch in ":*?\"<>|\n"):
        raise SketchSegConfigError(
            f"experiment.output_folder {value!r} is not a folder name under data/06_models (e.g. 'ours' or "
            "'sample/wo_vv'): it must be relative, without '..', and is experiment.variant by default")
    return text


def dataset_filepath(conf: Any) -> str | None:
    """The local file of a catalog entry (``filepath``, or that of the dataset an MLflow artifact
    dataset wraps); None for a memory dataset or an entry without one."""
    if not isinstance(conf, Mapping):
        return None
    path = conf.get("filepath")
    if path is None and isinstance(conf.get("dataset"), Mapping):
        path = conf["dataset"].get("filepath")
    return str(path) if path else None


def output_files(conf_catalog: Mapping[str, Any] | None, names: Iterable[str] = MODEL_OUTPUTS) -> dict[str, Path]:
    """``{dataset name: file}`` of ``names`` that the catalog configuration writes to a file."""
    files = {}
    for name in names:
        path = dataset_filepath((conf_catalog or {}).get(name))
        if path:
            files[name] = Path(path)
    return files


def lock_folders(files: Mapping[str, Path], state_path: str | Path | None) -> list[Path]:
    """The folders a run of this model must lock: the best checkpoint's (the variant's model
    folder) and the training state's, when it lies elsewhere. Sorted, so that every run takes
    them in the same order."""
    folders = {files["best_checkpoint"].parent.resolve()} if "best_checkpoint" in files else set()
    if state_path:  # resolved: a relative state path in the checkpoint's folder is the same folder, one lock
        folders.add(Path(state_path).parent.resolve())
    return sorted(folders, key=lambda p: str(p))


def checkpoint_variant(path: Path) -> str | None:
    """The ``variant`` recorded in a checkpoint's metadata; None when the file does not exist, is
    not a checkpoint or records none."""
    if not path.is_file():
        return None
    from sketchseg.model.checkpoint import read_checkpoint_metadata

    try:
        return read_checkpoint_metadata(path).get("variant") or None
    except Exception:  # noqa: BLE001 - not a readable checkpoint: nothing of a variant to protect
        return None


def check_checkpoints_belong_to(files: Mapping[str, Path], variant: str) -> None:
    """Raise one line naming the file and its variant when a checkpoint this run would overwrite
    holds another variant's model."""
    for name in CHECKPOINTS:
        path = files.get(name)
        held = checkpoint_variant(path) if path is not None else None
        if held is not None and held != variant:
            raise SketchSegConfigError(
                f"{path} holds the model of variant '{held}': this run of variant '{variant}' would overwrite it; "
                "give it its own folder (experiment.output_folder, by default the variant's name) or move that "
                "file away")


def remove_stale_results(files: Mapping[str, Path]) -> list[Path]:
    """Delete the test results (``TEST_RESULTS``) that describe the model a new checkpoint has
    just replaced; returns the removed files."""
    removed = []
    for name in TEST_RESULTS:
        path = files.get(name)
        if path is not None and path.is_file():
            path.unlink()
            removed.append(path)
    if removed:
        logger.info("new checkpoint: removed the previous model's test results (%s)",
                    ", ".join(str(p) for p in removed))
    return removed
