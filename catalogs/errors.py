"""The exception types of the catalogue package, which the command line maps to exit codes.

``BadInputError`` means the user's input stops the step (exit 2); ``QueryError`` is the
bad-input error of a row filter or a column list.  :mod:`pipeline.errors` re-exports these
classes (and adds ``ConfigError``), so a catalogue error and a pipeline error are one type.
Messages are one line that names what and where.
"""

from __future__ import annotations

__all__ = ["GalaxyCodaeError", "BadInputError", "QueryError"]


class GalaxyCodaeError(Exception):
    """Base class of every error this project raises on purpose."""


class BadInputError(GalaxyCodaeError):
    """Input data (a catalogue, an image, a store, a checkpoint) cannot be used."""


class QueryError(BadInputError):
    """A row-filter expression cannot be parsed or refers to an unknown column or function."""
