"""segment pipeline: segment a folder of user sketches with a chosen checkpoint."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
