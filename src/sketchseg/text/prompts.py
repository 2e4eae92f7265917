"""The category prompt (paper §3.2, Fig. 2b): a template with one ``{}`` filled with a category.

``PROMPT_TEMPLATE`` is the one default of the project's prompt template: conf/base's
``prompts.template`` spells it out, and ``model.prompt_template`` is ``${prompts.template}``.
(``sketchseg.model.config`` keeps its own copy, as ``model/`` imports nothing from ``text/``;
a test holds the two equal.)
"""

from __future__ import annotations

from sketchseg.errors import SketchSegConfigError

__all__ = ["PROMPT_TEMPLATE", "make_prompt"]

PROMPT_TEMPLATE = "A sketch of {}."  # the paper's category prompt


def make_prompt(category: str, template: str = PROMPT_TEMPLATE) -> str:
    """Fill the prompt ``template`` (one ``{}``) with ``category``: "A sketch of tree."."""
    if template.count("{}") != 1:
        raise SketchSegConfigError(
            f"prompt template {template!r} must contain exactly one '{{}}' placeholder "
            "(prompts.template in conf/base/parameters_prompts.yml)"
        )
    try:
        return template.format(category)
    except (IndexError, KeyError, ValueError) as exc:
        raise SketchSegConfigError(f"prompt template {template!r} cannot be filled: {exc}") from exc
