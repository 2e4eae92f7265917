"""Kedro project settings."""

from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any

from kedro.config import MissingConfigException, OmegaConfigLoader
from omegaconf import DictConfig, OmegaConf

from sketchseg.hooks import SketchSegHooks
from sketchseg.logs import tidy_logging
from sketchseg.pipelines.outputs import check_output_folder
from sketchseg.run_guard import MlflowRunGuard

tidy_logging()  # conf/logging.yml's console: plain lines when not a terminal, without per-run noise

HOOKS = (SketchSegHooks(), MlflowRunGuard())

#: the environment of machine settings (git-ignored) and the keys of it that apply under EVERY
#: environment: where runs are tracked and with which secrets describe the machine, not the
#: experiment. conf/local's parameters and catalog stay with the default environment (real
#: FS-COCO): its data roots and CLIP weight file would break ``--env=sample``.
LOCAL_ENV = "local"
MACHINE_KEYS = ("mlflow", "credentials")

#: Warnings of the pinned dependencies about their own code, which a user cannot act on: Kedro and
#: kedro-mlflow calling omegaconf's deprecated ``register_new_resolver`` (about 15 per run), MLflow
#: asking kedro-mlflow's ``KedroPipelineModel`` for type hints (at import). (message regex, module)
DEPENDENCY_WARNINGS = (
    (r"register_new_resolver\(\) is deprecated", "kedro"),
    (r"Add type hints to the `predict` method", "mlflow.pyfunc"),
)


class DependencyWarningFilter(logging.Filter):
    """Drops ``DEPENDENCY_WARNINGS`` that reach logging (Kedro's rich handler captures warnings
    as ``py.warnings`` records); MLflow shows its warning through ``simplefilter("once")``, which
    overrides any ``warnings`` filter, so this is the one place to catch it."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(re.search(message, text) and module.replace(".", os.sep) in text
                       for message, module in DEPENDENCY_WARNINGS)


def quiet_dependency_warnings() -> None:
    """Ignore exactly ``DEPENDENCY_WARNINGS`` (UserWarnings, by message and module), nothing else.
    Kedro reads these settings before it loads its plugins and builds the config loader, so the
    project's commands (``kedro run``, ``kedro viz``, ``python -m sketchseg``) stay quiet. pytest
    records warnings with its own filters around every test (pyproject.toml), so tests still see
    them (``pytest.warns``, the warnings summary)."""
    for message, module in DEPENDENCY_WARNINGS:
        warnings.filterwarnings("ignore", message=f".*{message}", category=UserWarning,
                                module=re.escape(module))
    py_warnings = logging.getLogger("py.warnings")
    if not any(isinstance(f, DependencyWarningFilter) for f in py_warnings.filters):
        py_warnings.addFilter(DependencyWarningFilter())


quiet_dependency_warnings()


#: the catalog's resolver of the variant's output folder (``data/06_models/${output_folder:}/...``)
OUTPUT_FOLDER_RESOLVER = "output_folder"


class SketchSegConfigLoader(OmegaConfigLoader):
    """``OmegaConfigLoader`` that resolves the parameters' ``${...}`` interpolations once, over
    conf/base, conf/<env> and the runtime parameters merged (Kedro resolves each environment
    apart, so ``model.prompt_template: ${prompts.template}`` in conf/base would keep the base
    template when conf/<env> sets ``prompts.template``). ``mlflow`` and ``credentials`` get
    conf/local on top under every environment (:meth:`__getitem__`). Other keys load as Kedro
    loads them."""

    def _resolve_from_raw_config(
        self,
        key: str,
        base_configs: dict[Path, DictConfig],
        env_configs: dict[Path, DictConfig],
        base_path: str,
        env_path: str,
        processed_files: set[Path],
    ) -> dict[str, Any]:
        run_env = self.env or self.default_run_env
        if key != "parameters" or run_env == self.base_env or not env_configs or not processed_files \
                or self.merge_strategy.get(key) != "soft":
            return super()._resolve_from_raw_config(key, base_configs, env_configs, base_path, env_path,
                                                    processed_files)
        merged = OmegaConf.merge(*base_configs.values(), *env_configs.values(), self.runtime_params or {})
        return OmegaConf.to_container(merged, resolve=True)  # type: ignore[return-value]

    def __getitem__(self, key: str) -> dict[str, Any]:
        """Kedro's loading, then conf/local's ``mlflow`` / ``credentials`` on top whatever the
        environment (Kedro reads conf/local only when it IS the environment). The catalog gets
        ``${output_folder:}``: the merged parameter ``experiment.output_folder``."""
        if key == "catalog" and key not in self:
            self._register_output_folder_resolver()
        if key not in MACHINE_KEYS or key in self:
            return super().__getitem__(key)
        local = self._local_machine_config(key)
        try:
            config = super().__getitem__(key)
        except MissingConfigException:
            if local is None:
                raise
            config = {}
        if local:
            config = OmegaConf.to_container(OmegaConf.merge(config, local))  # type: ignore[assignment]
        return config

    def _register_output_folder_resolver(self) -> None:
        """``${output_folder:}`` in the catalog = ``experiment.output_folder`` of THIS loader's
        parameters (base + environment + runtime parameters, e.g. ``--params
        experiment.variant=wo_vv``), read once per catalog load. Registered anew before each
        catalog load (OmegaConf's resolvers are process-wide), as Kedro does ``runtime_params``."""
        cache: dict[str, str] = {}

        def output_folder() -> str:
            if "value" not in cache:
                experiment = dict(self["parameters"].get("experiment") or {})
                cache["value"] = check_output_folder(experiment.get("output_folder", experiment.get("variant")))
            return cache["value"]

        OmegaConf.register_resolver(OUTPUT_FOLDER_RESOLVER, output_folder, replace=True)

    def _local_machine_config(self, key: str) -> dict[str, Any] | None:
        """conf/local's files for ``key`` when the run environment is another one (else None)."""
        if (self.env or self.default_run_env) == LOCAL_ENV:
            return None
        try:
            files = self._read_dir_configs(self._get_conf_env_path(LOCAL_ENV), [*self.config_patterns[key]], key,
                                           set(), key == "credentials")
        except MissingConfigException:  # no conf/local folder
            return None
        return self._merge_and_resolve(key, files) if files else None


CONFIG_LOADER_CLASS = SketchSegConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # conf/<env> overrides only the keys it names (deep merge), so conf/sample stays short.
    "merge_strategy": {"parameters": "soft", "catalog": "soft", "mlflow": "soft"},
    # ${cwd:} = the folder `kedro` runs in (the project root), so that relative URIs such as the
    # sqlite tracking store become absolute and stay put whoever opens them.
    "custom_resolvers": {"cwd": lambda: Path.cwd().as_posix()},
    "config_patterns": {
        "mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"],
    },
}
