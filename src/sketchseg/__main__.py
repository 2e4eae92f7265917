"""``python -m sketchseg`` / ``sketchseg`` runs the Kedro project (same as ``kedro run``);
``sketchseg app [--checkpoint PATH] [--port N] [--host ADDR]`` starts the web app instead."""

from __future__ import annotations

import sys
from pathlib import Path

from kedro.framework.cli.utils import find_run_command
from kedro.framework.project import configure_project


def main(*args, **kwargs):  # pragma: no cover - thin CLI glue
    if not args and not kwargs and sys.argv[1:2] == ["app"]:
        from sketchseg.app.cli import main as app_main

        return app_main(sys.argv[2:])
    package_name = Path(__file__).parent.name
    configure_project(package_name)
    interactive = hasattr(sys, "ps1")
    kwargs["standalone_mode"] = not interactive
    run = find_run_command(package_name)
    return run(*args, **kwargs)


if __name__ == "__main__":  # pragma: no cover
    main()
