"""The Kedro configuration environment of the current run: checked before anything else runs, and
named in the commands that error messages suggest (``kedro run --pipelines=train --env=sample``).

Plain Python (no Kedro import): the hooks set the environment when the Kedro context is created
(``set_run_env``), datasets and nodes read it through ``run_command``.
"""

from __future__ import annotations

from pathlib import Path

from sketchseg.errors import SketchSegConfigError

_DEFAULT_ENVS = ("local",)
_state: dict[str, str | None] = {"env": None}


def environments(conf_source: str | Path) -> list[str]:
    """The configuration environments of a project: the folders under ``conf_source``."""
    conf = Path(conf_source)
    return sorted(p.name for p in conf.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))) \
        if conf.is_dir() else []


def check_environment(conf_source: str | Path, env: str | None, default_env: str = "local") -> None:
    """Raise ``SketchSegConfigError`` naming ``env`` and the environments that exist when
    ``conf_source/env`` is missing. The default environment (``local``, gitignored) may be absent;
    a packaged configuration (an archive, not a folder) is not checked."""
    conf = Path(conf_source)
    if not env or env == default_env or not conf.is_dir():
        return
    if not (conf / env).is_dir():
        known = ", ".join(environments(conf)) or "none"
        raise SketchSegConfigError(
            f"configuration environment '{env}' does not exist (no folder {conf / env}); "
            f"the environments are: {known}"
        )


def set_run_env(env: str | None) -> None:
    """Remember the environment of the run that is starting (called by the project hooks)."""
    _state["env"] = env


def run_env() -> str | None:
    return _state["env"]


def run_command(pipeline: str) -> str:
    """``kedro run --pipelines=<pipeline>``, with ``--env=<env>`` when the current run is not in the
    default environment."""
    env = _state["env"]
    suffix = f" --env={env}" if env and env not in _DEFAULT_ENVS else ""
    return f"kedro run --pipelines={pipeline}{suffix}"
