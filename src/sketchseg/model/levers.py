"""Implementation switches of ``SketchSegModel`` ("fast" vs "reference", ``model.implementation``)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from sketchseg.model.errors import ModelConfigError


@dataclass(frozen=True)
class Levers:
    """Implementation switches of ``SketchSegModel``; none changes a result beyond float rounding.

    sdpa
        ``F.scaled_dot_product_attention`` for the q-k and v-v paths (else explicit matmul-softmax).
    shared_qkv
        the v-v path reuses the block's q/k/v projection (else it projects its values itself).
    batched_categories
        all category images of a batch re-encoded in one pass (else one pass per category slot:
        the first category of every sketch, then the second, ...).
    text_cache
        caption / prompt embeddings cached by string (the text tower is frozen); else every call
        runs the text tower on exactly the strings it is given.
    device_losses
        "same string" masks and pair indices built once on the host and copied asynchronously
        (pinned memory), loss reductions without host syncs; else the losses of ``losses.py``.
    """

    sdpa: bool = True
    shared_qkv: bool = True
    batched_categories: bool = True
    text_cache: bool = True
    device_losses: bool = True

    @classmethod
    def for_implementation(cls, implementation: str) -> Levers:
        if implementation == "fast":
            return cls()
        if implementation == "reference":
            return cls(**{f.name: False for f in fields(cls)})
        raise ModelConfigError(f"model.implementation must be 'fast' or 'reference', got {implementation!r}")
