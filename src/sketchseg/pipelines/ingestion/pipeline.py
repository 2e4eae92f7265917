from kedro.pipeline import Pipeline, node, pipeline

from .nodes import ingest, split


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                ingest,
                inputs="params:data",
                outputs=["fscoco_manifest", "ingestion_quarantine", "ingestion_summary"],
                name="ingest_fscoco",
            ),
            node(
                split,
                inputs=["fscoco_manifest", "params:splits"],
                outputs=["sketch_splits", "split_summary", "split_counts"],
                name="make_splits",
            ),
        ]
    )
