from kedro.pipeline import Pipeline, node, pipeline

from .nodes import make_sample, pretrain_tiny_clip


def create_pipeline(**kwargs) -> Pipeline:
    """Write the generated FS-COCO-shaped sample."""
    return pipeline(
        [
            node(
                make_sample,
                inputs=["params:sample", "params:data", "params:splits"],
                outputs="sample_summary",
                name="make_sample",
                tags=["sample"],
            ),
        ]
    )


def create_pretrain_pipeline(**kwargs) -> Pipeline:
    """Opt-in: CLIP-style pre-training of the tiny CLIP on generated sketches (after make_sample)."""
    return pipeline(
        [
            node(
                pretrain_tiny_clip,
                inputs=["sample_summary", "params:pretrain", "params:model"],
                outputs=["tiny_clip_weights", "tiny_clip_pretrain_summary"],
                name="pretrain_tiny_clip",
                tags=["sample", "pretrain"],
            ),
        ]
    )
