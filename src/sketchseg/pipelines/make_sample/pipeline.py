from kedro.pipeline import Pipeline, node, pipeline

from .nodes import make_sample


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                make_sample,
                inputs=["params:sample", "params:data", "params:splits"],
                outputs="sample_summary",
                name="make_sample",
                tags=["sample"],
            )
        ]
    )
