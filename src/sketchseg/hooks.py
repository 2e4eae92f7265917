"""Project hooks: apply the experiment variant's preset, then name and tag the MLflow run after it;
lock and guard the variant's output folder (:mod:`sketchseg.pipelines.outputs`).

``kedro run --pipelines=train --params=experiment.variant=wo_vv`` selects a preset of
``conf/base/parameters_variants.yml`` (see :mod:`sketchseg.experiments.variants`). Right after the
catalog is built, the parameter datasets (``parameters``, ``params:model``, ``params:model.margin``
...) are replaced by the EFFECTIVE values (environment + preset + command line, the command line
winning), so every node and kedro-mlflow's parameter logging (at each node's start) see the same
numbers.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import re
import shlex
from collections.abc import Iterator, Mapping
from typing import Any

from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)

_MAX_TAG_CHARS = 5000
#: the node whose pipelines take the training lock (engine/runlock.py)
TRAINING_NODE = "fit_and_select_checkpoint"

_typed_command: dict[str, str | None] = {"command": None}


def remember_command(command: str | None) -> None:
    """The command line the user typed (set by ``sketchseg.cli``), stored as the ``kedro_command`` tag."""
    _typed_command["command"] = command


def runner_name(runner: Any) -> str:
    """``SequentialRunner`` for a runner class, instance or the ``<...SequentialRunner object at 0x..>``
    text Kedro passes in ``run_params``."""
    if isinstance(runner, str):
        match = re.match(r"<([\w.]+) object at 0x[0-9a-fA-F]+>$", runner)
        return match.group(1).rsplit(".", 1)[-1] if match else runner
    return getattr(runner, "__name__", type(runner).__name__)


def _flat_params(params: Mapping[str, Any], prefix: str = "") -> list[str]:
    items: list[str] = []
    for key, value in params.items():
        if isinstance(value, Mapping):
            items += _flat_params(value, f"{prefix}{key}.")
        else:
            items.append(f"{prefix}{key}={value}")
    return items


def kedro_command(run_params: Mapping[str, Any]) -> str:
    """The command as the user typed it (``kedro run`` / ``python -m sketchseg``), else the
    ``kedro run --pipelines=...`` command that repeats this run (a run started from Python)."""
    if _typed_command["command"]:
        return _typed_command["command"]
    parts = ["kedro", "run"]
    pipelines = run_params.get("pipeline_names") or ([run_params["pipeline_name"]] if run_params.get("pipeline_name")
                                                     else [])
    for option, key in (("--pipelines", None), ("--tags", "tags"), ("--nodes", "node_names"),
                        ("--from-nodes", "from_nodes"), ("--to-nodes", "to_nodes"), ("--from-inputs", "from_inputs"),
                        ("--to-outputs", "to_outputs"), ("--namespaces", "namespaces")):
        values = pipelines if key is None else run_params.get(key)
        if values:
            parts.append(f"{option}={','.join(str(v) for v in values)}")
    if run_params.get("env"):
        parts.append(f"--env={run_params['env']}")
    if run_params.get("runtime_params"):
        parts.append(shlex.quote("--params=" + ",".join(_flat_params(run_params["runtime_params"]))))
    return " ".join(parts)


def parameter_entries(params: Mapping[str, Any]) -> dict[str, Any]:
    """Catalog entries Kedro builds from parameters: ``parameters`` plus ``params:<dotted key>`` for
    every key and nested key (as ``KedroContext._get_parameters`` does for dict parameters)."""
    entries: dict[str, Any] = {"parameters": params}

    def add(name: str, value: Any) -> None:
        entries[f"params:{name}"] = value
        if isinstance(value, Mapping):
            for key, sub in value.items():
                add(f"{name}.{key}", sub)

    for key, value in params.items():
        add(str(key), value)
    return entries


@contextlib.contextmanager
def _quiet_catalog_replacements() -> Iterator[None]:
    """Kedro's catalog warns once per replaced dataset; we log one summary line instead."""
    cat_logger = logging.getLogger("kedro.io.data_catalog")
    level = cat_logger.level
    cat_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        cat_logger.setLevel(level)


def rewrite_parameters(catalog: Any, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Replace the catalog's parameter datasets whose value differs between ``old`` and ``new``
    parameter trees; returns the replaced dataset names."""
    old_entries = parameter_entries(old)
    new_entries = parameter_entries(new)
    changed = [k for k, v in new_entries.items() if k not in old_entries or old_entries[k] != v]
    with _quiet_catalog_replacements():
        for name in changed:
            catalog[name] = copy.deepcopy(new_entries[name])
    return changed


def writes_model_files(pipeline: Any) -> bool:
    """Whether ``pipeline`` writes files of a trained model (checkpoints, test results, report)."""
    from sketchseg.pipelines.outputs import MODEL_OUTPUTS

    try:
        outputs = set(pipeline.all_outputs())
    except Exception:  # noqa: BLE001 - not a Kedro pipeline
        return False
    return bool(outputs & set(MODEL_OUTPUTS))


class SketchSegHooks:
    """Applies the experiment variant and tags the active MLflow run (started by kedro-mlflow).

    The tags are set at the first node, when kedro-mlflow's own ``before_pipeline_run`` has
    surely opened the run, so the MLflow UI can group and compare runs by variant.
    """

    def __init__(self) -> None:
        self._params: dict[str, Any] = {}
        self._runtime_keys: list[str] = []
        self._variant_applied = False
        self._overrides: dict[str, Any] = {}
        self._tagged = False
        self._pipeline_name: Any = None
        self._locks: list[Any] = []
        self._model_files: dict[str, Any] = {}
        self._run_id: str | None = None

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        """First of all hooks (kedro-mlflow's included): a misspelt ``--env`` stops here, named; then
        an unknown parameter key, before the catalog and any node."""
        from sketchseg.experiments.params_check import check_project_parameters
        from sketchseg.experiments.variants import flatten_keys
        from sketchseg.logs import tidy_logging
        from sketchseg.pipelines.environment import check_environment, set_run_env

        tidy_logging()  # again: Kedro may have re-applied conf/logging.yml since the settings loaded

        loader = context.config_loader
        check_environment(getattr(loader, "conf_source", "conf"), context.env,
                          getattr(loader, "default_run_env", "local"))
        set_run_env(context.env)

        runtime = getattr(loader, "runtime_params", None) or getattr(context, "_runtime_params", None)
        # an unknown key (a typo in conf/<env> or --params) fails here, before the catalog and any node
        check_project_parameters(
            getattr(loader, "conf_source", "conf"), getattr(context, "env", None) or getattr(loader, "env", None)
            or getattr(loader, "default_run_env", None), runtime,
            base_env=getattr(loader, "base_env", None) or "base",
            patterns=(getattr(loader, "config_patterns", None) or {}).get("parameters") or ("parameters*",))
        # the variant's output folder (the catalog's ${output_folder:}) named in one line when unusable
        from sketchseg.pipelines.outputs import check_output_folder

        experiment = dict(context.params.get("experiment") or {})
        check_output_folder(experiment.get("output_folder", experiment.get("variant")))
        self._runtime_keys = flatten_keys(dict(runtime or {}))
        self._variant_applied = False
        self._overrides = {}

    @hook_impl(trylast=True, specname="after_context_created")
    def mark_experiment(self, context: Any) -> None:
        """After kedro-mlflow has set up (and created) the run's experiment: tag it as a model-training
        one for the MLflow UI, so that even an experiment whose first run was refused carries it."""
        name = getattr(getattr(getattr(getattr(context, "mlflow", None), "tracking", None), "experiment", None),
                       "name", None)
        if not name:
            return
        try:
            import mlflow

            experiment = mlflow.get_experiment_by_name(name)
            if experiment is not None:
                from sketchseg.tracking import mark_experiment_as_model_training

                mark_experiment_as_model_training(experiment.experiment_id)
        except Exception as exc:  # noqa: BLE001 - the UI's view is no reason to stop a run
            logger.debug("could not tag MLflow experiment %s as model training: %s", name, exc)

    @hook_impl
    def after_catalog_created(self, catalog: Any, conf_catalog: dict[str, Any], parameters: dict[str, Any]) -> None:
        from sketchseg.experiments.variants import effective_parameters, variant_overrides
        from sketchseg.pipelines.outputs import output_files

        self._model_files = output_files(conf_catalog)  # the variant's folder (catalog ${output_folder:})
        params = dict(parameters.get("parameters") or {})
        effective, applied = effective_parameters(params, self._runtime_keys)
        self._variant_applied = applied
        if not applied:
            return
        name = effective["experiment"]["variant"]
        self._overrides = variant_overrides(params.get("variants") or {}, name)
        changed = rewrite_parameters(catalog, params, effective)
        leaves = sorted(k[len("params:"):] for k in changed
                        if k.startswith("params:") and not isinstance(parameter_entries(effective)[k], Mapping))
        logger.info("experiment variant '%s' applied (command-line keys kept: %s); changed: %s",
                    name, ", ".join(self._runtime_keys) or "none", ", ".join(leaves) or "nothing")

    @hook_impl(tryfirst=True)  # before kedro-mlflow opens its run: a refused run leaves no MLflow run
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        """The training lock, then the run's pre-flight (missing data, NLTK data, weights:
        sketchseg.pipelines.preflight); both before kedro-mlflow opens its MLflow run."""
        from sketchseg.pipelines.preflight import check_run

        self._tagged = False
        self._run_id = None
        try:
            self._params = catalog.load("parameters")
        except Exception:  # noqa: BLE001 - a run without parameters has nothing to tag
            self._params = {}
        self._pipeline_name = run_params.get("pipeline_names") or run_params.get("pipeline_name")
        trains = any(getattr(n, "name", None) == TRAINING_NODE for n in getattr(pipeline, "nodes", ()))
        if trains or writes_model_files(pipeline):
            self._take_locks(trains)
        env = run_params.get("env")
        try:
            check_run(pipeline, catalog, self._params, env=None if env in (None, "local") else env)
        except BaseException:
            self._release_lock()  # Kedro calls no on_pipeline_error for a refusal before the run
            raise

    def _take_locks(self, trains: bool) -> None:
        """The run lock of the variant's folder (and of the training state's, when elsewhere):
        refuses, naming the holder, while another run writes that variant's files. A training
        run then refuses to overwrite checkpoints of another variant."""
        from sketchseg.engine.runlock import RunLock, lock_path_for
        from sketchseg.pipelines.outputs import check_checkpoints_belong_to, lock_folders
        from sketchseg.tracking import end_stale_run

        state_path = (self._params.get("training") or {}).get("state_path") if trains else None
        try:
            for folder in lock_folders(self._model_files, state_path):
                lock = RunLock(lock_path_for(folder), on_stale=end_stale_run)  # a kill -9'd run: KILLED
                lock.acquire()
                self._locks.append(lock)
            if trains:
                check_checkpoints_belong_to(self._model_files,
                                            str((self._params.get("experiment") or {}).get("variant") or ""))
        except BaseException:
            self._release_lock()
            raise

    @hook_impl
    def after_dataset_saved(self, dataset_name: str) -> None:
        """A new best checkpoint: the previous model's test results go (an interrupted evaluation
        must not leave them beside the new model)."""
        if dataset_name == "best_checkpoint" and self._locks:
            from sketchseg.pipelines.outputs import remove_stale_results

            remove_stale_results(self._model_files)

    @hook_impl
    def after_pipeline_run(self, pipeline: Any, catalog: Any) -> None:
        self._release_lock()
        from sketchseg.pipelines.summary import METRICS_DATASET, log_run_summary

        if METRICS_DATASET in getattr(pipeline, "all_outputs", lambda: set())():
            log_run_summary(catalog, self._run_id)  # the scores, the checkpoint, the MLflow run, what next

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._release_lock()

    def _release_lock(self) -> None:
        while self._locks:
            self._locks.pop().release()

    @hook_impl(trylast=True, specname="before_pipeline_run")
    def tag_runner_and_command(self, run_params: dict[str, Any]) -> None:
        """After kedro-mlflow has opened the run and tagged it from ``run_params`` (trylast): the
        runner's name instead of its repr, and the command as typed (``--pipelines``, not
        kedro-mlflow's ``--pipeline``)."""
        from sketchseg.tracking import set_tags

        set_tags({"runner": runner_name(run_params.get("runner")), "kedro_command": kedro_command(run_params)})

    @hook_impl
    def before_node_run(self, node: Any, inputs: dict[str, Any]) -> None:
        if self._tagged:
            return
        self._tagged = True
        from sketchseg.tracking import active_run_id, mark_experiment_as_model_training, set_tags, tag_run_with_experiment

        self._run_id = active_run_id()
        for lock in self._locks:
            lock.update(mlflow_run_id=self._run_id or "")

        mark_experiment_as_model_training()  # the MLflow UI opens the experiment on its runs, not GenAI
        tag_run_with_experiment(self._params, pipeline_name=self._pipeline_name)
        exp = dict(self._params.get("experiment") or {})
        tags: dict[str, Any] = {"sketchseg.preset": "yes" if self._variant_applied else "no"}
        for key in ("group", "description", "grid"):
            if exp.get(key) not in (None, ""):
                tags[f"sketchseg.{key}"] = exp[key]
        if self._variant_applied:
            tags["sketchseg.overrides"] = json.dumps(self._overrides, sort_keys=True)[:_MAX_TAG_CHARS]
        set_tags(tags)
