"""Project-wide exception types."""

from __future__ import annotations


class SketchSegError(Exception):
    """Base class of every error raised on purpose by sketchseg."""


class SketchSegDataError(SketchSegError):
    """Input data is missing or malformed; the message names the file and the problem."""


class SketchSegConfigError(SketchSegError):
    """A configuration value is invalid or inconsistent."""
