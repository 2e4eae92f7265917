"""Project pipelines."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from sketchseg.pipelines.evaluation import pipeline as evaluation
from sketchseg.pipelines.ingestion import pipeline as ingestion
from sketchseg.pipelines.make_sample import pipeline as make_sample
from sketchseg.pipelines.prompts import pipeline as prompts
from sketchseg.pipelines.report import pipeline as report
from sketchseg.pipelines.segment import pipeline as segment
from sketchseg.pipelines.training import pipeline as training


def register_pipelines() -> dict[str, Pipeline]:
    """``train`` (the default) runs ingestion -> splits -> prompts -> fit -> select -> evaluate."""
    data = ingestion.create_pipeline() + prompts.create_pipeline()
    train = data + training.create_pipeline() + evaluation.create_pipeline()
    return {
        "make_sample": make_sample.create_pipeline(),
        "pretrain_sample": make_sample.create_pretrain_pipeline(),  # opt-in tiny-CLIP pre-training
        "ingestion": ingestion.create_pipeline(),
        "prompts": prompts.create_pipeline(),
        "data": data,
        "training": training.create_pipeline(),
        "evaluation": evaluation.create_pipeline(),
        "train": train,
        "report": report.create_pipeline(),  # after train: figures and tables of the chosen checkpoint
        "segment": segment.create_pipeline(),  # your own sketches, any categories
        "__default__": train,
    }
