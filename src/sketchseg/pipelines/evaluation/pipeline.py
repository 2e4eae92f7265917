from kedro.pipeline import Pipeline, node, pipeline

from .nodes import choose_checkpoint, evaluate_test


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(choose_checkpoint, inputs=["best_checkpoint", "last_checkpoint", "params:evaluation"],
                 outputs="evaluated_checkpoint", name="choose_evaluated_checkpoint"),
            node(
                evaluate_test,
                inputs=[
                    "evaluated_checkpoint",
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
