"""Project hooks: name and tag the MLflow run after the experiment variant."""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)


class SketchSegHooks:
    """Tags the active MLflow run (started by kedro-mlflow) with the experiment variant.

    The tags are set at the first node, when kedro-mlflow's own ``before_pipeline_run`` has
    surely opened the run, so the MLflow UI can group and compare runs by variant.
    """

    def __init__(self) -> None:
        self._params: dict[str, Any] = {}
        self._tagged = False

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
        from sketchseg.tracking import tag_run_with_experiment

        tag_run_with_experiment(self._params, pipeline_name=self._pipeline_name)
