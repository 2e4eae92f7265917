"""Kedro project settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader
from omegaconf import DictConfig, OmegaConf

from sketchseg.hooks import SketchSegHooks

HOOKS = (SketchSegHooks(),)


class SketchSegConfigLoader(OmegaConfigLoader):
    """``OmegaConfigLoader`` that resolves the parameters' ``${...}`` interpolations once, over
    conf/base, conf/<env> and the runtime parameters merged (Kedro resolves each environment
    apart, so ``model.prompt_template: ${prompts.template}`` in conf/base would keep the base
    template when conf/<env> sets ``prompts.template``). Other keys load as Kedro loads them."""

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
