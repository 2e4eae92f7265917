"""Project hooks: apply the experiment variant's preset, then name and tag the MLflow run after it.

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
from collections.abc import Iterator, Mapping
from typing import Any

from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)

_MAX_TAG_CHARS = 5000


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

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        from sketchseg.experiments.variants import flatten_keys

        runtime = getattr(context.config_loader, "runtime_params", None) or getattr(context, "_runtime_params", None)
        self._runtime_keys = flatten_keys(dict(runtime or {}))
        self._variant_applied = False
        self._overrides = {}

    @hook_impl
    def after_catalog_created(self, catalog: Any, parameters: dict[str, Any]) -> None:
        from sketchseg.experiments.variants import effective_parameters, variant_overrides

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

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        self._tagged = False
        try:
            self._params = catalog.load("parameters")
        except Exception:  # noqa: BLE001 - a run without parameters has nothing to tag
            self._params = {}
        self._pipeline_name = run_params.get("pipeline_names") or run_params.get("pipeline_name")

    @hook_impl
    def before_node_run(self, node: Any, inputs: dict[str, Any]) -> None:
        if self._tagged:
            return
        self._tagged = True
        from sketchseg.tracking import mark_experiment_as_model_training, set_tags, tag_run_with_experiment

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
