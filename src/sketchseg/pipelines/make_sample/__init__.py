"""make_sample pipeline."""

from .pipeline import create_pipeline, create_pretrain_pipeline

__all__ = ["create_pipeline", "create_pretrain_pipeline"]
