"""A run's pre-flight (sketchseg.pipelines.preflight), before kedro-mlflow opens its MLflow run."""

from __future__ import annotations

import nltk
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro_datasets.json import JSONDataset
from kedro.pipeline import Pipeline, node

from sketchseg.errors import SketchSegDataError
from sketchseg.pipelines import preflight
from sketchseg.pipelines.datasets import SafetensorsCheckpointDataset
from sketchseg.text import nltk_setup


def _identity(*args):
    return args[0]


def test_a_missing_file_input_is_named_with_the_pipeline_that_makes_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pipe = Pipeline([node(_identity, ["best_checkpoint", "params:x"], "out", name="use_it")])
    catalog = DataCatalog({"best_checkpoint": SafetensorsCheckpointDataset("data/06_models/best.safetensors"),
                           "out": MemoryDataset()})
    assert [m[:2] for m in preflight.missing_file_inputs(pipe, catalog)] == [
        ("best_checkpoint", "data/06_models/best.safetensors")]
    with pytest.raises(SketchSegDataError, match=r"no trained checkpoint yet: data/06_models/best.safetensors "
                                                 r"does not exist; run `kedro run --pipelines=train( --env=\w+)?` first"):
        preflight.check_run(pipe, catalog, {})
    catalog["summary"] = JSONDataset(filepath="data/summary.json")
    other = Pipeline([node(_identity, "summary", "out2", name="read_summary")])
    with pytest.raises(SketchSegDataError, match=r"input 'summary' not found: data/summary.json does not exist"):
        preflight.check_run(other, catalog, {})
    (tmp_path / "data/06_models").mkdir(parents=True)
    (tmp_path / "data/06_models/best.safetensors").write_bytes(b"x")
    preflight.check_run(pipe, catalog, {})  # there now


def test_a_pipeline_that_reads_captions_checks_the_nltk_data(tmp_path, monkeypatch):
    pipe = Pipeline([node(_identity, ["captions", "params:prompts"], "prompts_out", name="extract")])
    catalog = DataCatalog({"captions": MemoryDataset([])})
    assert preflight.needs_nltk(pipe)
    preflight.check_run(pipe, catalog, {"prompts": {"allow_download": False}})  # found (conftest / data/00_nltk)
    monkeypatch.setattr(nltk.data, "path", [])
    monkeypatch.delenv("NLTK_DATA", raising=False)
    monkeypatch.setattr(nltk_setup, "project_nltk_dirs", lambda: [])
    with pytest.raises(SketchSegDataError, match="NLTK data missing: punkt_tab"):
        preflight.check_run(pipe, catalog, {"prompts": {"allow_download": False}})
    other = Pipeline([node(_identity, "captions", "y", name="no_captions")])
    preflight.check_run(other, catalog, {})  # no caption parsing: no NLTK check
