"""report pipeline: catalogued figures and tables of a trained model (paper Fig. 7, S9, S11, S14, S2.2)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
