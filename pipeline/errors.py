"""The few exception types the command line maps to exit codes.

``BadInputError`` and ``ConfigError`` mean the user's input stops the step (exit 2);
anything else escaping a command is an internal failure (exit 1).
Messages are one line that names what and where.

``GalaxyCodaeError``, ``BadInputError`` and ``QueryError`` are defined in
:mod:`catalogs.errors` (the catalogue package stands on numpy and astropy alone) and
re-exported here: ``except BadInputError`` catches a catalogue's errors too.
"""

from catalogs.errors import BadInputError, GalaxyCodaeError, QueryError

__all__ = ["GalaxyCodaeError", "BadInputError", "ConfigError", "QueryError", "one_line"]


class ConfigError(GalaxyCodaeError):
    """A configuration file or option is invalid (unknown key, wrong type, bad value)."""


def one_line(text: str) -> str:
    """``text`` with every control character escaped (``\\n``, ``\\x1b``, ...), so it prints as one line.

    For echoing user text (an expression, a path, an id) in a message: a newline or a terminal
    escape sequence in it can neither split the message nor act on the terminal.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
