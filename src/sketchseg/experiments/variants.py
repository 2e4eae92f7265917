"""Named experiment variants (paper Tab. 2, Tab. 4, Fig. 6, the authors' code): pure functions.

A variant is a preset of parameter overrides kept in ``conf/base/parameters_variants.yml``::

    variants:
      wo_vv:
        group: "Tab. 4"
        description: "w/o v-v attention: ..."
        paper: {miou: 43.55, pixel_acc: 58.09, stroke_acc: 59.03}
        model: {vv_train: false, vv_inference: false}

Every key of a variant other than :data:`META_KEYS` names a parameter section (``model``,
``training``, ``evaluation`` ...) whose keys override the environment's parameters (deep merge).
Keys given explicitly on the command line (``kedro run --params model.margin=0.5``) always win
over the preset. The special value ``category_loss_layers: last`` keeps only the last of the
environment's blocks (``[12]`` for ViT-B-16's ``[7, 10, 12]``, ``[6]`` on the tiny sample model).
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from sketchseg.errors import SketchSegConfigError

logger = logging.getLogger(__name__)

#: keys of a variant that describe it rather than override parameters
META_KEYS = ("description", "group", "paper")
#: value of ``model.category_loss_layers`` that means "the last layer only" (Tab. 4 w/o multi-layer loss)
LAST_LAYER = "last"
#: the variant that is always the reference row of a comparison
REFERENCE_VARIANT = "ours"
#: paper metrics a variant may list under ``paper:``
PAPER_METRICS = ("miou", "pixel_acc", "stroke_acc")


def flatten_keys(d: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the leaves of a nested mapping: ``{"a": {"b": 1}}`` -> ``["a.b"]``."""
    out: list[str] = []
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(flatten_keys(value, path + "."))
        else:
            out.append(path)
    return out


def _is_explicit(path: str, explicit: Collection[str]) -> bool:
    """``path`` (or a section above it, or a key below it) was given on the command line."""
    for key in explicit:
        if path == key or path.startswith(key + ".") or key.startswith(path + "."):
            return True
    return False


def _merge(base: dict[str, Any], override: Mapping[str, Any], explicit: Collection[str], prefix: str) -> None:
    for key, value in override.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            node = dict(base[key])
            _merge(node, value, explicit, path + ".")
            base[key] = node
        elif _is_explicit(path, explicit):
            logger.info("variant preset sets %s but the command line gives it: keeping %r", path, base.get(key))
        else:
            base[key] = copy.deepcopy(value)


def variant_overrides(variants: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The parameter sections a variant overrides (its meta keys removed); unknown name -> error."""
    if not isinstance(variants, Mapping) or not variants:
        raise SketchSegConfigError(
            f"experiment.variant={name!r} but no variants are defined; add them under `variants:` in "
            "conf/base/parameters_variants.yml"
        )
    if name not in variants:
        raise SketchSegConfigError(
            f"unknown experiment.variant {name!r} (conf/base/parameters_variants.yml); known variants: "
            + ", ".join(variants)
        )
    spec = variants[name] or {}
    if not isinstance(spec, Mapping):
        raise SketchSegConfigError(f"variants.{name} in conf/base/parameters_variants.yml must be a mapping")
    return {k: v for k, v in spec.items() if k not in META_KEYS}


def resolve_last_layer(model: Mapping[str, Any], env_model: Mapping[str, Any]) -> list[int]:
    """``[last block]`` for ``category_loss_layers: last``: the largest block index among the
    environment's ``category_loss_layers``, ``cross_attention_layers`` and ``vv_blocks``."""
    candidates: list[int] = []
    for source in (env_model, model):
        for key in ("category_loss_layers", "cross_attention_layers", "vv_blocks"):
            value = source.get(key)
            if isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
                candidates.extend(int(v) for v in value)
    if not candidates:
        raise SketchSegConfigError(
            "model.category_loss_layers: last needs block indices to choose from (model.category_loss_layers, "
            "model.cross_attention_layers or model.vv_blocks)"
        )
    return [max(candidates)]


def apply_variant(
    params: Mapping[str, Any],
    variants: Mapping[str, Any],
    name: str,
    explicit: Collection[str] = (),
) -> dict[str, Any]:
    """Effective parameters of variant ``name``: ``params`` deep-merged with the variant's overrides.

    Parameters
    ----------
    params
        the environment's parameters (runtime parameters included), e.g. Kedro's ``parameters``.
    variants
        the ``variants`` mapping of ``parameters_variants.yml``.
    name
        the variant to apply; unknown -> :class:`SketchSegConfigError` listing the known ones.
    explicit
        dotted keys given on the command line (``model.margin``, or a whole section ``model``):
        the preset never overrides them.

    Returns a new dict (``params`` is not modified) in which ``experiment.variant`` is ``name`` and
    ``experiment.group`` / ``experiment.description`` come from the variant unless given explicitly.
    """
    overrides = variant_overrides(variants, name)
    spec = variants[name] or {}
    out = copy.deepcopy(dict(params))
    unknown = sorted(k for k in overrides if k not in out)
    if unknown:
        raise SketchSegConfigError(
            f"variants.{name} overrides unknown parameter section(s) {unknown}; known sections: "
            + ", ".join(sorted(k for k in out if k != "variants"))
        )
    bad = sorted(k for k, v in overrides.items() if not isinstance(v, Mapping))
    if bad:
        raise SketchSegConfigError(f"variants.{name}.{bad[0]} must be a mapping of parameter overrides")
    _merge(out, overrides, explicit, "")

    model = out.get("model")
    if isinstance(model, dict) and model.get("category_loss_layers") == LAST_LAYER:
        model["category_loss_layers"] = resolve_last_layer(model, dict(params.get("model") or {}))

    experiment = dict(out.get("experiment") or {})
    meta = {"variant": name, "group": spec.get("group"), "description": spec.get("description")}
    for key, value in meta.items():
        if value is not None and not _is_explicit(f"experiment.{key}", explicit):
            experiment[key] = value
    out["experiment"] = experiment
    return out


def effective_parameters(
    params: Mapping[str, Any], explicit: Collection[str] = ()
) -> tuple[dict[str, Any], bool]:
    """Apply the variant named by ``params["experiment"]["variant"]`` when it is a preset.

    A variant name that is not a preset is accepted as a plain label when it comes from the
    configuration (e.g. ``ours-sample`` in conf/sample) and is an error when it was given on the
    command line (``experiment.variant`` in ``explicit``). Returns ``(params, applied)``.
    """
    variants = params.get("variants") or {}
    name = str((params.get("experiment") or {}).get("variant") or "")
    if not name:
        return copy.deepcopy(dict(params)), False
    if name not in variants and not _is_explicit("experiment.variant", explicit):
        logger.info("experiment.variant %r is not a preset of parameters_variants.yml: parameters used as configured",
                    name)
        return copy.deepcopy(dict(params)), False
    return apply_variant(params, variants, name, explicit), True


def group_key(group: str) -> str:
    """``"Tab. 4"`` -> ``"tab4"``, ``"authors' code"`` -> ``"authorscode"`` (selector form)."""
    return re.sub(r"[^a-z0-9]", "", str(group).lower())


def select_variants(variants: Mapping[str, Any], spec: str | Iterable[str]) -> list[str]:
    """Variant names for a selector: ``all``, variant names, or groups (``tab2``, ``tab4``,
    ``fig6`` = fig6a + fig6b, ``authors``), comma-separated. Selecting a group adds the reference
    variant ``ours`` first. Order: the order of ``variants``; duplicates removed."""
    tokens = [t.strip() for t in (spec.split(",") if isinstance(spec, str) else spec) if t and t.strip()]
    if not tokens:
        raise SketchSegConfigError("no variants selected: give names, groups (tab2, tab4, fig6, authors) or 'all'")
    chosen: set[str] = set()
    for token in tokens:
        if token == "all":
            chosen.update(variants)
            continue
        if token in variants:
            chosen.add(token)
            continue
        key = group_key(token)
        members = [n for n, s in variants.items() if key and group_key((s or {}).get("group", "")).startswith(key)]
        if not members:
            groups = sorted({str((s or {}).get("group")) for s in variants.values() if (s or {}).get("group")})
            raise SketchSegConfigError(
                f"unknown variant or group {token!r}; variants: {', '.join(variants)}; groups: {', '.join(groups)}"
            )
        chosen.update(members)
        if REFERENCE_VARIANT in variants:
            chosen.add(REFERENCE_VARIANT)
    return [n for n in variants if n in chosen]
