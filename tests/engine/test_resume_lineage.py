"""A resume checks what it resumes (issue #17): the training state records the model / training
configuration and the training data's fingerprint, a resume with other settings refuses and lists
them, an explicit override goes on and is tagged, the resumed run names the run it continues;
an empty or truncated state file is one clear line."""

from __future__ import annotations

import shutil

import pytest
import torch

from sketchseg.data.fscoco import ingest_fscoco
from sketchseg.data.sample import generate_sample
from sketchseg.data.splits import splits_from_fscoco_seg
from sketchseg.engine.config import EvalConfig, TrainConfig
from sketchseg.engine.run import train_and_select
from sketchseg.engine.state import load_training_state
from sketchseg.errors import SketchSegConfigError, SketchSegDataError
from sketchseg.model.config import ModelConfig
from sketchseg.text.nltk_setup import ensure_nltk_data
from sketchseg.text.nouns import extract_table

MODEL = dict(clip_model="sketchseg-tiny", pretrained=None, allow_random_init=True, image_size=64,
             vv_blocks=[4, 5, 6], cross_attention_layers=[4, 5, 6], category_loss_layers=[4, 5, 6], finetune="full",
             num_visual_prompts=1)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, nltk_data_path):
    root = tmp_path_factory.mktemp("sample")
    generate_sample(root / "fscoco", root / "seg", n_participants=3, sketches_per_participant=4, seed=5,
                    test_participants=(1,), val_per_participant=1, write_photos=False, progress=False)
    manifest, _ = ingest_fscoco(root / "fscoco", root / "seg", max_rejection_rate=0.0, progress=False)
    splits = splits_from_fscoco_seg(manifest)
    ensure_nltk_data(nltk_data_path, allow_download=False)
    prompts, _ = extract_table(splits[["sketch_id", "caption"]])
    data = {"fscoco_root": str(root / "fscoco"), "fscoco_seg_root": str(root / "seg")}
    return splits, prompts, data


class Recorder:
    def __init__(self, run_id: str = "run-1") -> None:
        self.tags: dict = {}
        self.run_id = run_id

    def log_metrics(self, metrics, step=None):  # noqa: ANN001
        return None

    def set_tags(self, tags):  # noqa: ANN001
        self.tags.update(tags)

    def active_run_id(self) -> str:
        return self.run_id


def _train(inputs, state, log, *, epochs=1, prompts=None, **training):
    splits, base_prompts, data = inputs
    settings = dict(batch_size=4, learning_rate=1e-3, seed=7, device="cpu", num_workers=0,
                    validate_before_training=False)
    tcfg = TrainConfig(epochs=epochs, state_path=str(state), **{**settings, **training})
    return train_and_select(splits, base_prompts if prompts is None else prompts, ModelConfig.from_dict(MODEL),
                            tcfg, EvalConfig(batch_size=4, num_workers=0, render_size=96), data, log=log)


@pytest.fixture(scope="module")
def trained_state(inputs, tmp_path_factory):
    state = tmp_path_factory.mktemp("first") / "state.pt"
    _train(inputs, state, Recorder("run-1"))
    return state


@pytest.fixture()
def first_run(trained_state, tmp_path):
    state = tmp_path / "state.pt"
    shutil.copy(trained_state, state)
    return state


def test_the_state_records_its_lineage_and_run(first_run):
    import json

    state = load_training_state(first_run)
    lineage = json.loads(state["lineage"])
    assert state["mlflow_run_id"] == "run-1"
    assert lineage["training"]["seed"] == 7 and lineage["training"]["learning_rate"] == 1e-3
    assert lineage["model"]["margin"] == 0.3 and len(lineage["data"]["train_split"]) == 64
    assert "resume" not in lineage["training"] and "epochs" not in lineage["training"]


@pytest.mark.parametrize("change, key", [({"seed": 8}, "training.seed (7 -> 8)"),
                                         ({"learning_rate": 5e-4}, "training.learning_rate (0.001 -> 0.0005)")])
def test_resume_with_other_settings_refuses(inputs, first_run, change, key):
    with pytest.raises(SketchSegConfigError) as err:
        _train(inputs, first_run, Recorder("run-2"), epochs=2, resume=True, **change)
    msg = str(err.value)
    assert key in msg and "resume_despite_changes" in msg and str(first_run) in msg and "\n" not in msg


def test_resume_with_other_training_prompts_refuses(inputs, first_run):
    prompts = inputs[1].copy()
    prompts["prompts"] = [[p.replace("sketch", "drawing") for p in ps] for ps in prompts["prompts"]]
    with pytest.raises(SketchSegConfigError, match=r"data\.train_split \(changed\)"):
        _train(inputs, first_run, Recorder("run-2"), epochs=2, resume=True, prompts=prompts)


def test_override_goes_on_and_is_recorded(inputs, first_run):
    log = Recorder("run-2")
    _best, _last, history = _train(inputs, first_run, log, epochs=2, resume=True, seed=8,
                                   resume_despite_changes=True)
    assert history["epoch"].tolist() == [1, 2]
    assert log.tags["sketchseg.resume_changes"] == "training.seed (7 -> 8)"
    assert log.tags["sketchseg.resumed_from_run"] == "run-1"
    assert load_training_state(first_run)["mlflow_run_id"] == "run-2"


def test_unchanged_resume_goes_on_as_before(inputs, first_run):
    log = Recorder("run-2")
    _best, _last, history = _train(inputs, first_run, log, epochs=2, resume=True, num_workers=0, device="cpu")
    assert history["epoch"].tolist() == [1, 2]
    assert "sketchseg.resume_changes" not in log.tags
    assert log.tags["sketchseg.resumed_from_run"] == "run-1"
    assert log.tags["sketchseg.resumed_from"] == str(first_run)


def test_empty_and_truncated_states_are_one_clear_line(first_run, tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(SketchSegDataError) as err:
        load_training_state(empty)
    assert str(err.value) == f"training state {empty} is empty (0 bytes); delete it or set training.resume=false " \
                             "to start afresh"
    cut = tmp_path / "cut.pt"
    cut.write_bytes(first_run.read_bytes()[: first_run.stat().st_size // 2])
    with pytest.raises(SketchSegDataError) as err:
        load_training_state(cut)
    msg = str(err.value)
    assert msg.startswith(f"training state {cut} is unreadable") and "training.resume=false" in msg
    assert "\n" not in msg
    torch.save([1, 2], tmp_path / "other.pt")
    with pytest.raises(SketchSegDataError, match="not a sketchseg training state"):
        load_training_state(tmp_path / "other.pt")


def test_resume_on_another_backbone_is_refused_even_despite_changes(inputs, first_run, monkeypatch):
    """Issue #25: the state records the backbone's clip_fingerprint; a resume into a model of another
    backbone with the same names and shapes (QuickGELU instead of GELU) is refused in one line,
    whatever training.resume_despite_changes says (engine.state.resume_training)."""
    from sketchseg.model.model import build_model

    saved = load_training_state(first_run)["clip_fingerprint"]
    assert saved == build_model(ModelConfig.from_dict(MODEL)).clip_fingerprint
    monkeypatch.setitem(MODEL, "quick_gelu", True)
    with pytest.raises(SketchSegConfigError) as err:
        _train(inputs, first_run, Recorder("run-2"), epochs=2, resume=True, resume_despite_changes=True)
    msg = str(err.value)
    assert "another CLIP backbone architecture" in msg and str(first_run) in msg and "\n" not in msg
