"""Exception types of the model library (``model/`` imports nothing else from sketchseg)."""

from __future__ import annotations


class ModelError(Exception):
    """Base class of every error raised on purpose by ``sketchseg.model``."""


class ModelConfigError(ModelError, ValueError):
    """A model configuration value is invalid or does not fit the backbone."""


class CheckpointMismatchError(ModelError):
    """A checkpoint does not fit the model it is loaded into."""
