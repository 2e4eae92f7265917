"""Sketch-category pairs: the per-sketch category lists of a batch, flattened."""

from __future__ import annotations

from typing import Sequence


def category_pairs(
    categories: Sequence[Sequence[str]], prompts: Sequence[Sequence[str]] | None, batch: int, template: str
) -> tuple[list[int], list[str], list[str], list[int]]:
    """Flatten per-sketch categories: (sketch index, name, prompt) per pair, and counts. Without
    ``prompts`` a category's prompt is ``template`` (``cfg.prompt_template``) filled with its name.
    Duplicate category names of a sketch are kept once."""
    if len(categories) != batch:
        raise ValueError(f"{len(categories)} category lists for {batch} images")
    if prompts is not None and len(prompts) != batch:
        raise ValueError(f"{len(prompts)} prompt lists for {batch} images")
    b_idx: list[int] = []
    names: list[str] = []
    texts: list[str] = []
    counts: list[int] = []
    for b, cats in enumerate(categories):
        if isinstance(cats, str):
            raise ValueError(f"categories[{b}] must be a list of category names, got the string {cats!r}")
        if prompts is not None and len(prompts[b]) != len(cats):
            raise ValueError(f"sketch {b}: {len(cats)} categories but {len(prompts[b])} prompts")
        seen: set[str] = set()
        n = 0
        for c_i, name in enumerate(cats):
            if name in seen:
                continue
            seen.add(name)
            b_idx.append(b)
            names.append(name)
            texts.append(prompts[b][c_i] if prompts is not None else template.format(name))
            n += 1
        counts.append(n)
    return b_idx, names, texts, counts
