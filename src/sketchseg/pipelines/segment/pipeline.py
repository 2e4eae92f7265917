"""segment pipeline: ``kedro run --pipelines=segment`` over ``segment.input_dir``."""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import segment_sketches


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                segment_sketches,
                inputs="params:segment",
                outputs=["segmentation_table", "segmentation_label_maps", "segmentation_overlays", "segmentation_masks"],
                name="segment_user_sketches",
            )
        ]
    )
