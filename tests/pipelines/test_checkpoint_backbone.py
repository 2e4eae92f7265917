"""Issue #25: a checkpoint of another backbone (same names and shapes, another clip_fingerprint) is
refused by the evaluation and segment pipelines, through Kedro's runner."""

from __future__ import annotations

import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from tests.model.test_checkpoint_contract import other_backbone_checkpoint
from tests.pipelines.kedro_utils import TINY, nested, run
from tests.pipelines.test_report_segment import draw_user_sketches

MODELS = "data/06_models/sample/ours-sample"


def _model_params(project) -> dict:
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="sample", runtime_params=nested(TINY)) as session:
        return dict(session.load_context().params["model"])


def test_segment_refuses_a_checkpoint_of_another_backbone(kedro_project):
    other_backbone_checkpoint(kedro_project / MODELS / "best.safetensors", **_model_params(kedro_project))
    draw_user_sketches(kedro_project / "data/01_raw/user_sketches")
    with pytest.raises(Exception, match=r"backbone architecture differs \(clip_fingerprint"):
        run(kedro_project, "segment", params={"segment.categories": ["tree", "house"]})
    assert not (kedro_project / "data/07_model_output/segmentation/segmentation.csv").exists()


@pytest.mark.slow
def test_evaluation_refuses_a_checkpoint_of_another_backbone(kedro_project):
    run(kedro_project, "make_sample")
    run(kedro_project, "data")
    params = _model_params(kedro_project)
    for name in ("best", "last"):
        other_backbone_checkpoint(kedro_project / MODELS / f"{name}.safetensors", **params)
    with pytest.raises(Exception, match=r"backbone architecture differs \(clip_fingerprint"):
        run(kedro_project, "evaluation")
    assert not (kedro_project / "data/08_reporting/sample/ours-sample/test_metrics.json").exists()
    # an architecture key of conf that differs from the checkpoint's: refused in one line by default
    with pytest.raises(Exception, match=r"num_visual_prompts \(3 -> 2\).*evaluation\.model_config=conf"):
        run(kedro_project, "evaluation", params={"model.num_visual_prompts": 2})
