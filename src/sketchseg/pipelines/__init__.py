"""The project's Kedro pipelines, one package each (``nodes.py`` + ``pipeline.py``).

A package's ``create_pipeline`` is imported from its ``pipeline.py`` on first use, so the node
functions import without Kedro (plain Python use, the GPU check in ``benchmarks/``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_pipeline_attrs(package: str, *names: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) that takes ``names`` from ``<package>.pipeline`` when asked."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(f"{package}.pipeline"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
