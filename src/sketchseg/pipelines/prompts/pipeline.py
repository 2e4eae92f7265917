from kedro.pipeline import Pipeline, node, pipeline

from .nodes import build_prompts, plot_vocabulary


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                build_prompts,
                inputs=["sketch_splits", "params:prompts"],
                outputs=["sketch_prompts", "category_vocabulary", "prompt_counts"],
                name="extract_category_prompts",
            ),
            node(plot_vocabulary, inputs="category_vocabulary", outputs="vocabulary_plot", name="plot_vocabulary"),
        ]
    )
