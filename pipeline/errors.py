"""The few exception types the command line maps to exit codes.

``BadInputError`` and ``ConfigError`` mean the user's input stops the step (exit 2);
anything else escaping a command is an internal failure (exit 1).
Messages are one line that names what and where.
"""


class GalaxyCodaeError(Exception):
    """Base class of every error this package raises on purpose."""


class BadInputError(GalaxyCodaeError):
    """Input data (a catalogue, an image, a store, a checkpoint) cannot be used."""


class ConfigError(GalaxyCodaeError):
    """A configuration file or option is invalid (unknown key, wrong type, bad value)."""


class QueryError(BadInputError):
    """A row-filter expression cannot be parsed or refers to an unknown column."""
