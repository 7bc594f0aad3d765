"""The ``galaxy-codae`` command line.

Each sub-command lives in its own module of this package with two functions,
``add_arguments(parser)`` and ``run(args) -> int``, and an ``EXAMPLES`` text shown at the
end of its ``--help``.  Modules are imported only when their command runs, so
``galaxy-codae query`` never pays for torch.  The words options share are in
:mod:`pipeline.cli.common`.

Exit codes: 0 success, 2 bad usage or bad input that stops the step, 1 internal failure.
Errors go to stderr as one line first.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from pipeline import __version__
from pipeline.cli.common import HelpFormatter
from pipeline.errors import BadInputError, ConfigError, one_line

DESCRIPTION = """\
galaxy-codae: centroids, orientations and pose-free morphology of survey galaxies (CODAE).

  survey catalogue + cutouts --ingest--> Zarr store --train--> run (checkpoint, figures)
  store + checkpoint --infer--> FITS catalogue --query--> subsets; --stack--> derotated stacks

Run `galaxy-codae COMMAND --help` for a command's options and an example.
Exit codes: 0 success, 2 bad usage or input, 1 internal failure."""

#: command name -> (module in this package, one-line help); one entry per line
COMMANDS: dict[str, tuple[str, str]] = {
    "demo-survey": ("demo_survey", "write a simulated survey in Galaxy Zoo DECaLS layout"),
    "ingest": ("ingest", "read a catalogue and its cutouts into a sharded Zarr store"),
    "train": ("train", "train CODAE on a Zarr store"),
    "infer": ("infer", "write the FITS catalogue of centroids, orientations and latents"),
    "query": ("query", "select rows of a catalogue with a row filter"),
    "stack": ("stack", "recentre, derotate and stack selected cutouts"),
    "run": ("run", "the whole flow in one process (Prefect without a server)"),
    "similar": ("similar", "the galaxies nearest to one galaxy in the pose-free latents"),
    "show": ("show", "one galaxy: cutout with pose, reconstructions, residual, catalogue values"),
    "report": ("report", "one self-contained HTML page for a run, readable offline"),
    "evaluate": ("evaluate", "disentanglement metrics of CODAE and baselines"),
    "config": ("config", "print the default run configuration (YAML, commented)"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        sys.stderr.write(f"galaxy-codae: error: {one_line(message)}\n")
        self.print_usage(sys.stderr)
        raise SystemExit(2)


def _available() -> dict[str, tuple[str, str]]:
    found = {}
    for name, (module, help_) in COMMANDS.items():
        if importlib.util.find_spec(f"pipeline.cli.{module}") is not None:
            found[name] = (module, help_)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="galaxy-codae", description=DESCRIPTION, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"galaxy-codae {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (module, help_) in _available().items():
        mod = importlib.import_module(f"pipeline.cli.{module}")
        p = sub.add_parser(name, help=help_, description=help_, epilog=getattr(mod, "EXAMPLES", None),
                           formatter_class=HelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    args = build_parser().parse_args(argv)
    module = importlib.import_module(f"pipeline.cli.{args._module}")
    # Library warnings are held back and printed after the command's own lines, so an error's
    # first line on stderr is always ours; user text in a message is escaped to one line.
    with warnings.catch_warnings(record=True) as caught:
        code = _run(module, args)
    for w in caught:
        sys.stderr.write(f"galaxy-codae {args.command}: warning: {w.category.__name__}: {one_line(str(w.message))}\n")
    return code


def _run(module, args: argparse.Namespace) -> int:
    try:
        return int(module.run(args) or 0)
    except (BadInputError, ConfigError) as e:
        sys.stderr.write(f"galaxy-codae {args.command}: error: {one_line(str(e))}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"galaxy-codae {args.command}: interrupted\n")
        return 130
    except Exception as e:  # internal failure: one line first, then the traceback for a bug report
        sys.stderr.write(f"galaxy-codae {args.command}: internal error: {type(e).__name__}: {one_line(str(e))}\n")
        import traceback

        traceback.print_exc()
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
