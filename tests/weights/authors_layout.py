"""The authors' checkpoint layout for any sketchseg architecture (the tiny one in fast tests):
their key names and shapes, derived from a ``SketchSegModel`` with the authors' test-time layer."""

from __future__ import annotations

from sketchseg.weights.authors import _CA, _CA_USED, _SURGERY


def authors_layout(model) -> dict[str, tuple[int, ...]]:  # noqa: ANN001 - a SketchSegModel
    """``{their key (no module. prefix): shape}`` for ``model``'s architecture."""
    n = len(model.encoder.visual.transformer.resblocks)
    surgery = {v: k for k, v in _SURGERY.items()}
    ca = {v: k for k, v in _CA_USED.items()}
    out: dict[str, tuple[int, ...]] = {}
    for name, p in model.named_parameters():
        shape = tuple(p.shape)
        if name.startswith("encoder.visual."):
            key = name[len("encoder."):]
            parts = key.split(".")
            if key.startswith("visual.transformer.resblocks.") and int(parts[3]) >= n - 6:
                leaf = ".".join(parts[4:])
                key = ".".join(parts[:4] + [surgery.get(leaf, leaf)])
                if int(parts[3]) == n - 6 and leaf in surgery:
                    out["visual.attn." + surgery[leaf][len("attn."):]] = shape
            out[key] = shape
        elif name == "encoder.prompts.tokens":
            out["visual.prompt_embeddings"] = (1, *shape)
        elif name.startswith("encoder.authors_cross_attention."):
            module, _, leaf = name[len("encoder.authors_cross_attention."):].rpartition(".")
            theirs = ca[module]
            out[f"{_CA}{theirs}.{leaf}"] = shape
            for twin in ("layers.0", "layer1.0"):  # built, never called
                if theirs.startswith("encoder.layer2.0"):
                    out[f"{_CA}{theirs.replace('layer2.0', twin)}.{leaf}"] = shape
            out[f"transformer.ca.{theirs}.{leaf}"] = shape  # the text tower's own, unused
        elif name.startswith("text."):
            out[name[len("text."):]] = shape
        else:
            raise AssertionError(f"no authors' key for {name}")
    return out
