"""``galaxy-codae config --show-defaults`` or ``galaxy-codae config FILE``.

Prints a run configuration as YAML with each key's comment from :mod:`pipeline.config`:
the defaults, or the effective configuration of FILE (its values, defaults for the rest;
an unknown key or a bad value exits 2).  The output is a valid ``--config`` file.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
from pathlib import Path

EXAMPLES = """\
examples:
  galaxy-codae config --show-defaults > my.yaml      # edit, then: galaxy-codae train --config my.yaml ...
  galaxy-codae config my.yaml                        # what a run with my.yaml will use"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", nargs="?", type=Path, default=None,
                   help="a YAML run config to check and print in full")
    p.add_argument("--show-defaults", action="store_true", help="print the default configuration")


def _field_comments(cls: type) -> dict[str, str]:
    """Each field's comment in the dataclass source: the one on its line, else the lines above it."""
    comments: dict[str, str] = {}
    above: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("#").strip())
            continue
        m = re.match(r"\s+(\w+)\s*:[^=]*=[^#]*(?:#\s*(.*))?$", line)
        if m and m.group(1) in {f.name for f in dataclasses.fields(cls)}:
            text = m.group(2) or " ".join(above)
            if text:
                comments[m.group(1)] = text
        above = []
    return comments


def _yaml_value(value) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def commented_yaml(config) -> str:
    """``config`` (a :class:`~pipeline.config.RunConfig`) as YAML with every key's comment."""
    lines = [f"# galaxy-codae run configuration ({type(config).__name__}); see pipeline/config.py"]
    for section in dataclasses.fields(config):
        value = getattr(config, section.name)
        doc = (type(value).__doc__ or "").strip().splitlines()[0]
        lines.append(f"{section.name}:  # {doc}" if doc else f"{section.name}:")
        comments = _field_comments(type(value))
        plain = config.to_dict()[section.name]
        for f in dataclasses.fields(value):
            text = f"  {f.name}: {_yaml_value(plain[f.name])}"
            if f.name in comments:
                text = f"{text}  # {comments[f.name]}"
            lines.append(text)
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from pipeline.config import RunConfig, load_config
    from pipeline.errors import ConfigError

    if args.file is not None and args.show_defaults:
        raise ConfigError("give FILE or --show-defaults, not both")
    if args.file is None and not args.show_defaults:
        raise ConfigError("nothing to show: pass --show-defaults, or a config FILE to check")
    config = load_config(args.file) if args.file is not None else RunConfig()
    print(commented_yaml(config), end="")
    return 0
