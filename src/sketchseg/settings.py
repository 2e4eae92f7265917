"""Kedro project settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.config import MissingConfigException, OmegaConfigLoader
from omegaconf import DictConfig, OmegaConf

from sketchseg.hooks import SketchSegHooks
from sketchseg.run_guard import MlflowRunGuard

HOOKS = (SketchSegHooks(), MlflowRunGuard())

#: the environment of machine settings (git-ignored) and the keys of it that apply under EVERY
#: environment: where runs are tracked and with which secrets describe the machine, not the
#: experiment. conf/local's parameters and catalog stay with the default environment (real
#: FS-COCO): its data roots and CLIP weight file would break ``--env=sample``.
LOCAL_ENV = "local"
MACHINE_KEYS = ("mlflow", "credentials")


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
        environment (Kedro reads conf/local only when it IS the environment)."""
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
