"""ingestion pipeline."""

from sketchseg.pipelines import lazy_pipeline_attrs

__all__ = ["create_pipeline"]
__getattr__ = lazy_pipeline_attrs(__name__, *__all__)
