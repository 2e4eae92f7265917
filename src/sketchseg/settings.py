"""Kedro project settings."""

from __future__ import annotations

from pathlib import Path

from kedro.config import OmegaConfigLoader

from sketchseg.hooks import SketchSegHooks

HOOKS = (SketchSegHooks(),)

CONFIG_LOADER_CLASS = OmegaConfigLoader
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
