"""``galaxy-codae train``: train CODAE on a Zarr store.

Options override the run configuration (``--config``, else the defaults that
``galaxy-codae config --show-defaults`` prints); the help shows each default.
"""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """\
examples:
  galaxy-codae train --store survey.zarr --out run/ --max-minutes 10
  galaxy-codae config --show-defaults > my.yaml && galaxy-codae train --store survey.zarr --out run/ --config my.yaml
  galaxy-codae train --store survey.zarr --out run/ --resume --max-epochs 40     # continue a run"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pipeline.config import TrainConfig

    d = TrainConfig()  # the defaults, shown in the help

    def default(key: str) -> str:
        value = getattr(d, key)
        return f"(config train.{key}; default: {'none' if value is None else value})"

    p.add_argument("--store", required=True, type=Path, help="Zarr store written by `galaxy-codae ingest`")
    p.add_argument("--out", required=True, type=Path, help="run directory (checkpoint, config, metrics, figures)")
    p.add_argument("--config", type=Path,
                   help="YAML run config (model/loss/train sections); missing keys take the defaults "
                        "(galaxy-codae config --show-defaults)")
    p.add_argument("--max-epochs", type=int, help=f"passes over the store {default('max_epochs')}")
    p.add_argument("--max-steps", type=int, help=f"cap on optimiser steps {default('max_steps')}")
    p.add_argument("--max-minutes", type=float,
                   help=f"wall-clock budget; stops cleanly with a checkpoint {default('max_minutes')}")
    p.add_argument("--batch-size", type=int, help=f"images per step and process {default('batch_size')}")
    p.add_argument("--seed", type=int, help=f"random seed {default('seed')}")
    p.add_argument("--loader-workers", "--workers", dest="workers", type=int,
                   help=f"data loader processes {default('num_workers')}")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"],
                   help=f"auto picks CUDA when present {default('device')}")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint (with its config.yaml unless --config)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or lines")


def run(args: argparse.Namespace) -> int:
    from pipeline.checkpoint import load_checkpoint
    from pipeline.config import RunConfig, load_config
    from pipeline.train import distributed_from_environment, train

    if args.config is not None:
        config = load_config(args.config)
    elif args.resume:
        config = load_checkpoint(args.out / "checkpoint.pt")["config"]
    else:
        config = RunConfig()
    overrides = {"max_epochs": args.max_epochs, "max_steps": args.max_steps, "max_minutes": args.max_minutes,
                 "batch_size": args.batch_size, "seed": args.seed, "num_workers": args.workers,
                 "device": args.device}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        config = config.replace(train=overrides)
    if not args.store.exists():
        from pipeline.errors import BadInputError

        raise BadInputError(f"store not found: {args.store}")
    with distributed_from_environment(config.train.device):
        result = train(config, args.store, args.out, resume=args.resume, progress=not args.quiet)
    if result.rank != 0:
        return 0
    state = "stopped at its time budget" if result.stopped_early else "finished"
    print(f"train: {state} after {result.steps} steps ({result.epochs_completed:.2f} epochs), "
          f"loss {result.final_loss:.5f}, {result.images_per_s:.1f} img/s; checkpoint {result.checkpoint}")
    return 0
