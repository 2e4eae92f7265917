"""Exception types of the model library (``model/`` imports nothing else from sketchseg)."""

from __future__ import annotations


class ModelError(Exception):
    """Base class of every error raised on purpose by ``sketchseg.model``."""


class ModelConfigError(ModelError, ValueError):
    """A model configuration value is invalid or does not fit the backbone."""


class CheckpointMismatchError(ModelError):
    """A checkpoint does not fit the model it is loaded into."""


class CheckpointNotFoundError(ModelError, FileNotFoundError):
    """The checkpoint file does not exist (not a mismatch: nothing was read)."""

    def __init__(self, path: object) -> None:
        super().__init__(f"checkpoint {path} does not exist")
        self.filename = str(path)

    def __str__(self) -> str:  # OSError's own would be "[Errno None] None: '<path>'" once filename is set
        return str(self.args[0])
