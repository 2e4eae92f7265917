"""An unknown parameter key (a typo on the command line or in a conf file) fails before any node
runs, in one line naming the key and the nearest valid one (issue #17)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sketchseg.errors import SketchSegConfigError
from sketchseg.experiments.params_check import base_tree, check_project_parameters, unknown_keys
from tests.conftest import copy_project

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"


@pytest.fixture(scope="module")
def reference() -> dict:
    return base_tree(CONF)


def test_the_shipped_environments_are_clean():
    for env in ("base", "sample", "local"):
        check_project_parameters(CONF, env)


@pytest.mark.parametrize("key, hint", [
    ("training.epoch", "training.epochs"),
    ("data.fscoco_rot", "data.fscoco_root"),
    ("prompts.templat", "prompts.template"),
    ("model.margn", "model.margin"),
    ("evaluation.overlap_rul", "evaluation.overlap_rule"),
    ("report.n_overlay_sketch", "report.n_overlay_sketches"),
    ("segment.categorie", "segment.categories"),
    ("experiment.varient", "experiment.variant"),
    ("sample.n_participant", "sample.n_participants"),
    ("splits.test_participant", "splits.test_participants"),
    ("splits.expected_sizes.trian", "splits.expected_sizes.train"),
    ("pretrain.step", "pretrain.steps"),
    ("trainig", "training"),
])
def test_every_section_names_the_nearest_key(key, hint):
    *parents, leaf = key.split(".")
    tree: dict = {leaf: 1}
    for p in reversed(parents):
        tree = {p: tree}
    with pytest.raises(SketchSegConfigError) as err:
        check_project_parameters(CONF, "sample", tree)
    msg = str(err.value)
    assert msg == f"{key}: no such parameter; did you mean {hint}? (--params)"
    assert "\n" not in msg


def test_free_form_subtrees(reference):
    ok = {"experiment": {"grid": "g1", "group": "Tab. 4"},  # set per run by the grid / presets
          "variants": {"mine": {"description": "x", "paper": {"miou": 1.0}, "model": {"margin": 0.5},
                                "training": {"train_mode": False}}},
          "segment": {"model_overrides": {"pretrained": "/w.safetensors"}}}
    assert unknown_keys(ok, reference) == []
    bad = {"variants": {"mine": {"model": {"margn": 0.5}, "trainig": {"epochs": 1}}},
           "segment": {"model_overrides": {"pretrain": "x"}}}
    assert unknown_keys(bad, reference) == [
        ("variants.mine.model.margn", "variants.mine.model.margin"),
        ("variants.mine.trainig", "variants.mine.training"),
        ("segment.model_overrides.pretrain", "segment.model_overrides.pretrained"),
    ]


def test_a_typo_in_an_environment_file_names_the_file(tmp_path):
    project = copy_project(tmp_path / "p")
    path = project / "conf" / "sample" / "parameters.yml"
    params = yaml.safe_load(path.read_text())
    params["training"]["learning_rat"] = 0.1
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(SketchSegConfigError, match=r"training\.learning_rat: no such parameter; did you mean "
                                                   r"training\.learning_rate\? \(.*conf/sample/parameters\.yml\)"):
        check_project_parameters(project / "conf", "sample")
    (project / "conf" / "local" / "parameters.yml").write_text("model:\n  imagesize: 64\n")
    with pytest.raises(SketchSegConfigError, match=r"model\.imagesize: .*model\.image_size\?.*conf/local"):
        check_project_parameters(project / "conf", "local")


def test_kedro_run_fails_before_any_node(tmp_path, monkeypatch):
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    project = copy_project(tmp_path / "p")
    monkeypatch.chdir(project)
    bootstrap_project(project)
    ran = []
    with KedroSession.create(project_path=project, env="sample",
                             runtime_params={"training": {"epoch": 3}}) as session:
        session._hook_manager.register(_Spy(ran))
        with pytest.raises(SketchSegConfigError, match=r"^training\.epoch: no such parameter; did you mean "
                                                        r"training\.epochs\? \(--params\)$"):
            session.run(pipeline_names=["train"])
    assert ran == []


def test_launch_and_grid_refuse_a_typo(tmp_path, monkeypatch):
    from sketchseg import launch
    from sketchseg.experiments.grid import check_variants

    project = copy_project(tmp_path / "p")
    monkeypatch.chdir(project)
    with pytest.raises(SketchSegConfigError, match=r"training\.epoch: .*training\.epochs"):
        launch.main(["--env", "sample", "--params", "training.epoch=3", "--project-path", str(project)])
    with pytest.raises(SketchSegConfigError, match=r"model\.margn: .*model\.margin"):
        check_variants(project, "sample", ["ours"], "model.margn=0.5")


class _Spy:
    def __init__(self, ran: list) -> None:
        self.ran = ran

    from kedro.framework.hooks import hook_impl

    @hook_impl
    def before_node_run(self, node):  # noqa: ANN001
        self.ran.append(node.name)
