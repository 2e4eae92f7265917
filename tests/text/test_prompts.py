"""The prompt template: one default in text/, and conf's model.prompt_template following prompts.template."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sketchseg.errors import SketchSegConfigError
from sketchseg.text import nouns
from sketchseg.text.prompts import PROMPT_TEMPLATE, make_prompt

REPO = Path(__file__).resolve().parents[2]


def test_make_prompt_fills_the_template() -> None:
    assert make_prompt("tree") == "A sketch of tree."
    assert make_prompt("tree", "a drawing of a {}") == "a drawing of a tree"
    with pytest.raises(SketchSegConfigError, match="exactly one"):
        make_prompt("tree", "a sketch")


def test_one_default_template() -> None:
    """model/ keeps its own copy (it imports nothing from text/): the copies must agree."""
    from sketchseg.model.config import DEFAULT_PROMPT_TEMPLATE, ModelConfig

    assert PROMPT_TEMPLATE == "A sketch of {}."  # the paper's (§3.2, Fig. 2b)
    assert ModelConfig().prompt_template == DEFAULT_PROMPT_TEMPLATE == PROMPT_TEMPLATE
    assert nouns.DEFAULT_TEMPLATE == PROMPT_TEMPLATE
    conf = yaml.safe_load((REPO / "conf/base/parameters_prompts.yml").read_text())
    assert conf["prompts"]["template"] == PROMPT_TEMPLATE
    model = yaml.safe_load((REPO / "conf/base/parameters_model.yml").read_text())
    assert model["model"]["prompt_template"] == "${prompts.template}"


def test_text_does_not_import_the_model() -> None:
    code = ("import sys, sketchseg.text.nouns, sketchseg.text.prompts, sketchseg.text.nltk_setup; "
            "print(sorted(m for m in sys.modules if m.startswith('sketchseg.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "sketchseg.model" not in out, out


def _params(project: Path, env: str, runtime: dict) -> dict:
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    with KedroSession.create(project_path=project, env=env, runtime_params=runtime) as session:
        return session.load_context().params


def test_model_prompt_template_follows_prompts_template(kedro_project) -> None:
    """``kedro run --params prompts.template=X`` and a conf/<env> ``prompts.template`` both reach
    model.prompt_template (Kedro resolves ``${...}`` per environment: settings.SketchSegConfigLoader
    resolves the parameters once, over base + env + runtime)."""
    from kedro.framework.cli.utils import _split_params

    assert _params(kedro_project, "sample", {})["model"]["prompt_template"] == PROMPT_TEMPLATE
    runtime = _split_params(None, None, "prompts.template=A drawing of {}.")  # as `kedro run --params` parses it
    for env in ("sample", "base"):
        params = _params(kedro_project, env, runtime)
        assert params["prompts"]["template"] == params["model"]["prompt_template"] == "A drawing of {}."
    (kedro_project / "conf/local/parameters.yml").write_text('prompts:\n  template: "A doodle of {}."\n')
    params = _params(kedro_project, "local", {})
    assert params["prompts"]["template"] == params["model"]["prompt_template"] == "A doodle of {}."
    assert _params(kedro_project, "local", runtime)["model"]["prompt_template"] == "A drawing of {}."
    # an explicit model.prompt_template still wins over the interpolation
    params = _params(kedro_project, "sample", {"model": {"prompt_template": "A scribble of {}."}})
    assert params["model"]["prompt_template"] == "A scribble of {}." and params["prompts"]["template"] == PROMPT_TEMPLATE
