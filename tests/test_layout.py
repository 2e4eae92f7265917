"""The house rules of the code base (docs/design.md, "Layers"), checked on the source itself.

* layers: data / text (and ``errors``) <- model <- engine / pretrain / reporting <- pipelines / api /
  experiments / the Kedro glue <- the web app and the command line (``app``, ``__main__``): no module
  imports from a layer above its own;
* ``model/`` imports nothing from sketchseg outside ``model/`` (a plain PyTorch library);
* no ``pipelines/*/nodes.py`` imports another pipeline's nodes;
* no file under ``src/sketchseg`` is longer than 450 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "sketchseg"
MAX_LINES = 450

#: top-level part of sketchseg -> layer (higher may import lower, never the other way round)
LAYERS = {
    "errors": 0, "data": 0, "text": 0,
    "limits": 0,  # size limits on inputs (pixels, caption length, file sizes): used from data up to the app
    "progress": 0,  # progress bars / log lines: used from data (sample writing) up to the experiment grid
    "workers": 0,  # the signal-safe worker pool of the data steps (ingestion, the sample generator)
    "logs": 0,  # the console and info.log of conf/logging.yml (settings, hooks)
    "model": 1,
    "engine": 2, "pretrain": 2, "reporting": 2,
    "tracking": 3, "run_guard": 3, "pipelines": 3, "api": 3, "experiments": 3, "hooks": 3, "settings": 3,
    "cli": 3, "weights": 3, "pipeline_registry": 3, "launch": 3, "__init__": 3,
    "app": 4, "__main__": 4,
}


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _part(path_or_module: Path | str) -> str:
    if isinstance(path_or_module, Path):
        rel = path_or_module.relative_to(SRC).parts
        return rel[0].removesuffix(".py") if rel else "__init__"
    parts = path_or_module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every sketchseg import in ``path`` (relative ones resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ["sketchseg", *path.relative_to(SRC).parent.parts]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "sketchseg"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] == "sketchseg":
                out += [(node.lineno, f"{name}.{a.name}") for a in node.names]  # a.name: a module or a name
    return out


def test_every_part_has_a_layer():
    parts = {_part(p) for p in _modules()}
    assert parts <= set(LAYERS), f"give these parts of sketchseg a layer: {sorted(parts - set(LAYERS))}"


def test_no_import_runs_up_a_layer():
    upward = []
    for path in _modules():
        own = LAYERS[_part(path)]
        for line, module in _imports(path):
            target = _part(module)
            if target in LAYERS and LAYERS[target] > own:
                upward.append(f"{path.relative_to(SRC)}:{line} imports {module}")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_model_is_self_contained():
    outside = [f"{p.relative_to(SRC)}:{line} imports {m}"
               for p in (SRC / "model").rglob("*.py") for line, m in _imports(p)
               if not (m == "sketchseg.model" or m.startswith("sketchseg.model."))]
    assert not outside, "model/ imports from sketchseg outside model/:\n" + "\n".join(outside)


def test_no_pipeline_imports_another_pipelines_nodes():
    crossing = []
    for nodes in (SRC / "pipelines").glob("*/nodes.py"):
        own = nodes.parent.name
        for line, module in _imports(nodes):
            parts = module.split(".")
            # pipelines/<other>/ is another pipeline; pipelines/<module>.py (datasets, environment) is shared
            if len(parts) >= 3 and parts[1] == "pipelines" and parts[2] != own \
                    and (SRC / "pipelines" / parts[2]).is_dir():
                crossing.append(f"{nodes.relative_to(SRC)}:{line} imports {module}")
    assert not crossing, "\n".join(crossing)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_file_length(path: Path):
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(SRC)} has {n} lines (at most {MAX_LINES}): split it by idea"
