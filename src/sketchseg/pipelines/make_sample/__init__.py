"""make_sample pipeline."""

from sketchseg.pipelines import lazy_pipeline_attrs

__all__ = ["create_pipeline", "create_pretrain_pipeline"]
__getattr__ = lazy_pipeline_attrs(__name__, *__all__)
