"""Unknown parameter keys fail before any node runs: ``training.epoch=3`` is a typo, not a no-op.

The valid keys are the key tree of conf/base's parameter files. Every other source, the run
environment's parameter files (conf/sample, conf/local ...) and the runtime parameters
(``kedro run --params``, the grid, ``python -m sketchseg.launch --params``), may only name keys of
that tree. Free-form subtrees:

* ``variants``: preset names are free; each preset's sections (other than its meta keys
  ``description`` / ``group`` / ``paper``) are checked against the sections they override;
* ``segment.model_overrides``: checked against the ``model`` section (it overrides a checkpoint's
  model configuration);
* an empty mapping or a null in conf/base takes any keys below it;
* ``experiment.group`` / ``experiment.grid``: set per run by the variant presets and the grid.

:func:`check_project_parameters` is called by the project hook (``after_context_created``, before
the catalog and any node) and by the experiment grid before it starts its runs.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from sketchseg.errors import SketchSegConfigError
from sketchseg.experiments.variants import META_KEYS

#: keys that are not in conf/base but are set per run (variant presets, the experiment grid)
EXTRA_KEYS = ("experiment.group", "experiment.grid")
#: free-form subtree -> the section its inner keys are checked against
CHECKED_AS = {"segment.model_overrides": "model"}
#: Kedro's parameter file patterns (OmegaConfigLoader's default)
DEFAULT_PATTERNS = ("parameters*", "parameters*/**", "**/parameters*")
_SUFFIXES = (".yml", ".yaml", ".json")


def _hint(key: str, choices: Iterable[str], shown: str) -> str | None:
    """The nearest valid key at the same level, spelt as the unknown one is shown."""
    near = difflib.get_close_matches(key, [str(c) for c in choices], n=1, cutoff=0.6)
    return shown + near[0] if near else None


def unknown_keys(tree: Mapping[str, Any], reference: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """``[(dotted key, nearest valid key or None)]`` for every key of ``tree`` that ``reference``
    (conf/base's parameters) does not have, with the free-form rules of the module docstring."""
    out: list[tuple[str, str | None]] = []

    def walk(node: Mapping[str, Any], ref: Mapping[str, Any], prefix: str, shown: str) -> None:
        for raw_key, value in node.items():
            key = str(raw_key)
            path, label = prefix + key, shown + key
            if path in EXTRA_KEYS:
                continue
            if path == "variants" and isinstance(value, Mapping):
                walk_variants(value)
                continue
            if path in CHECKED_AS and isinstance(value, Mapping):
                section = reference.get(CHECKED_AS[path])
                if isinstance(section, Mapping) and section:
                    walk(value, section, CHECKED_AS[path] + ".", label + ".")
                continue
            if key not in ref:
                out.append((label, _hint(key, ref, shown)))
                continue
            sub = ref[key]
            if isinstance(value, Mapping) and isinstance(sub, Mapping) and sub:
                walk(value, sub, path + ".", label + ".")

    def walk_variants(variants: Mapping[str, Any]) -> None:
        for name, spec in variants.items():
            if not isinstance(spec, Mapping):
                continue
            sections = {k: v for k, v in spec.items() if k not in META_KEYS}
            allowed = {k: v for k, v in reference.items() if k != "variants"}
            walk(sections, allowed, "", f"variants.{name}.")

    walk(tree, reference, "", "")
    return out


def describe(problems: Iterable[tuple[str, str | None]], source: str) -> list[str]:
    """One message per unknown key: ``training.epoch: no such parameter; did you mean training.epochs?``."""
    out = []
    for key, hint in problems:
        msg = f"{key}: no such parameter"
        if hint:
            msg += f"; did you mean {hint}?"
        out.append(f"{msg} ({source})")
    return out


def _load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise SketchSegConfigError(f"{path}: cannot read this parameter file ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise SketchSegConfigError(f"{path}: a parameter file must hold a mapping, got {type(data).__name__}")
    return {k: v for k, v in data.items() if not str(k).startswith("_")}  # Kedro drops "_" variables


def parameter_files(folder: Path, patterns: Iterable[str] = DEFAULT_PATTERNS) -> list[Path]:
    """The parameter files Kedro's config loader reads in one environment folder."""
    found: set[Path] = set()
    if folder.is_dir():
        for pattern in patterns:
            for p in folder.glob(pattern):
                if p.is_file() and p.suffix in _SUFFIXES and not any(part.startswith(".") for part in
                                                                     p.relative_to(folder).parts):
                    found.add(p)
    return sorted(found)


def base_tree(conf: Path, base_env: str = "base", patterns: Iterable[str] = DEFAULT_PATTERNS) -> dict[str, Any]:
    """conf/base's parameters merged (keys only matter: the values are not resolved)."""
    merged: dict[str, Any] = {}
    for path in parameter_files(conf / base_env, patterns):
        _deep_merge(merged, _load(path))
    return merged


def _deep_merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


def check_project_parameters(
    conf: str | Path,
    env: str | None,
    runtime_params: Mapping[str, Any] | None = None,
    *,
    base_env: str = "base",
    patterns: Iterable[str] = DEFAULT_PATTERNS,
) -> None:
    """Raise :class:`SketchSegConfigError` (one line) when a parameter file of ``conf/<env>``, the
    presets of conf/base or ``runtime_params`` name a key that conf/base's parameters do not have."""
    conf = Path(conf)
    if not (conf / base_env).is_dir():
        return  # an archived or unusual conf source: nothing to compare against
    patterns = tuple(patterns)
    reference = base_tree(conf, base_env, patterns)
    messages: list[str] = []
    for path in parameter_files(conf / base_env, patterns):  # the presets and model_overrides of conf/base
        messages += describe(unknown_keys(_load(path), reference), str(path))
    if env and env != base_env:
        for path in parameter_files(conf / env, patterns):
            messages += describe(unknown_keys(_load(path), reference), str(path))
    if runtime_params:
        messages += describe(unknown_keys(_nest(runtime_params), reference), "--params")
    if messages:
        raise SketchSegConfigError(" | ".join(messages))


def _nest(params: Mapping[str, Any]) -> dict[str, Any]:
    """Runtime parameters with dotted keys (``{"training.epochs": 3}``) as a nested mapping."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        *parents, leaf = str(key).split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                break
        else:
            if isinstance(value, Mapping) and isinstance(node.get(leaf), dict):
                _deep_merge(node[leaf], value)
            else:
                node[leaf] = dict(value) if isinstance(value, Mapping) else value
    return out
