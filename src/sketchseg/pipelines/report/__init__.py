"""report pipeline: catalogued figures and tables of a trained model (paper Fig. 7, S9, S11, S14, S2.2)."""

from sketchseg.pipelines import lazy_pipeline_attrs

__all__ = ["create_pipeline"]
__getattr__ = lazy_pipeline_attrs(__name__, *__all__)
