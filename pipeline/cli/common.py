"""What every sub-command shares: the help layout and the common options' words.

One vocabulary across commands:

- ``--catalog CAT``: the catalogue a command reads (the survey's for ``ingest``/``run``, the
  CODAE catalogue for ``query``/``stack``/``similar``/``show``, which also take it as their
  first positional argument);
- ``--store``, ``--out``, ``--config``, ``--checkpoint``: paths, as their names say;
- ``--n``: how many objects to make (demo survey, synthetic evaluation data);
- ``--image-size``: side in pixels of the images the model sees (the store's);
  ``--cutout-size``: side of the simulated survey's cutout files;
- ``--workers``: processes working in parallel on the step (1: this process only);
  ``--loader-workers``: the training data loader's processes;
- ``--overwrite``, ``--quiet``, ``--device``, ``--seed``: the same meaning everywhere.

Old spellings stay as aliases (``ingest --size``, ``run --demo-n``/``--demo-size``,
``train --workers``).
"""

from __future__ import annotations

import argparse

from pipeline.errors import BadInputError

__all__ = ["HelpFormatter", "add_catalog_argument", "catalog_path"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples printed as written; each option's default shown when it has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False or default == argparse.SUPPRESS
                or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


def add_catalog_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """The catalogue a command reads: a positional ``CAT`` or ``--catalog CAT``."""
    parser.add_argument("catalog", metavar="CAT", nargs="?", default=None, help=help)
    parser.add_argument("--catalog", dest="catalog_option", metavar="CAT", default=None,
                        help="the catalogue, as an option (the same as CAT)")


def catalog_path(args: argparse.Namespace) -> str:
    """The catalogue given as ``CAT`` or ``--catalog`` (one of them, or both the same)."""
    positional, option = args.catalog, getattr(args, "catalog_option", None)
    if positional is not None and option is not None and positional != option:
        raise BadInputError(f"two catalogues given: {positional} and --catalog {option}; give one")
    path = positional if positional is not None else option
    if path is None:
        raise BadInputError("no catalogue given: pass CAT (or --catalog CAT)")
    return path
