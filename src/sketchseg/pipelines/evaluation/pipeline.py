from kedro.pipeline import Pipeline, node, pipeline

from .nodes import evaluate_test


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                evaluate_test,
                inputs=[
                    "best_checkpoint",
                    "sketch_splits",
                    "params:model",
                    "params:evaluation",
                    "params:training",
                    "params:data",
                ],
                outputs=["test_metrics", "test_per_sketch", "test_per_category"],
                name="evaluate_test_set",
            )
        ]
    )
