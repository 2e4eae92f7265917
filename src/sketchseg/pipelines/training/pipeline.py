from kedro.pipeline import Pipeline, node, pipeline

from .nodes import plot_training_curves, train_model


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                train_model,
                inputs=[
                    "sketch_splits",
                    "sketch_prompts",
                    "params:model",
                    "params:training",
                    "params:evaluation",
                    "params:data",
                    "params:experiment",
                ],
                outputs=["best_checkpoint", "last_checkpoint", "training_history"],
                name="fit_and_select_checkpoint",
            ),
            node(plot_training_curves, inputs="training_history", outputs="training_curves", name="plot_training_curves"),
        ]
    )
