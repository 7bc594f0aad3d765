"""``galaxy-codae run``: the whole flow (ingest, train, infer, stack, report) in one process.

Runs the Prefect flow ``galaxy-codae`` (:mod:`flows.galaxy_codae`) without a server: Prefect's
ephemeral mode starts a temporary API in the background for the length of the run (its database
is ``$PREFECT_HOME/prefect.db``).  Set ``PREFECT_API_URL`` to record the run on a real server
instead.  Results are cached under ``OUT/.prefect-results``: run the same command again after a
failure or a kill and the finished shards and a finished training are skipped.

``--demo`` alone is sized to end in a few minutes on a 2-core CPU: :data:`DEMO_N` galaxies, split
over the workers, and unless ``--config``, ``--max-epochs`` or ``--max-minutes`` says otherwise
:data:`DEMO_MAX_STEPS` training steps, stopped sooner by a budget of :data:`DEMO_MAX_MINUTES` on a
busy machine; without ``--config`` the demo trains with :data:`DEMO_MODEL` and :data:`DEMO_TRAIN`.
The run ends with a summary (:mod:`pipeline.run_summary`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

#: galaxies in the demo survey of ``run --demo`` (``--n`` for more)
DEMO_N = 300
#: training steps of ``run --demo`` when no budget is given (``--max-minutes`` or ``--max-epochs`` for more)
DEMO_MAX_STEPS = 1000
#: ... and the time budget that stops them sooner (an idle 2-core CPU makes about 1,000 in it)
DEMO_MAX_MINUTES = 2.0
#: model settings of ``run --demo`` without ``--config``: the default CODAE on a 32-pixel store, a
#: quarter of the pixels of 64, so a two-minute budget makes five times the steps.  Measured on the
#: demo survey, one thread of an idle 2-core CPU, two minutes each: at 64 pixels 200 steps, the
#: aligned reconstructions one blob that differs only in brightness (R^2 of the aligned inputs by
#: the aligned reconstructions 0.07), PA within 1.0 deg (median) of the moments; at 32 pixels and
#: lr 0.002, 1,007 steps, reconstructions that differ in size, elongation and brightness (R^2 0.87),
#: PA within 0.4 deg (lr 0.001: 1,023 steps, R^2 0.51, 1.3 deg).
DEMO_MODEL: dict[str, object] = {"image_size": 32}
#: training settings of ``run --demo`` without ``--config``: one torch thread (on a 2-core CPU shared
#: with other work, load average 4-5, one thread made 0.75 steps/s where two made 0.2: they wait on
#: each other whenever either is descheduled); batches of 16 (the same images in twice the updates,
#: and the updates are what a short run lacks); the learning rate above.
DEMO_TRAIN: dict[str, object] = {"cpu_threads": 1, "batch_size": 16, "lr": 0.002}
#: passes over the demo survey allowed, enough that the steps or the minutes end the run first
DEMO_MAX_EPOCHS = 100
#: objects per store shard and per task unless ``--shard-size`` says otherwise
SHARD_SIZE = 1024
#: objects per store chunk (the ingest's default): a shard holds whole chunks
CHUNK_SIZE = 8

EXAMPLES = """\
examples:
  galaxy-codae run --demo --out demo-output                      # simulated survey, generated when absent
  galaxy-codae run --demo --n 2000 --max-minutes 10 --out demo-2000   # the bigger demo
  galaxy-codae run --catalog survey/catalog.parquet --images survey/images --out run1 --max-minutes 30"""


def _stacks(text: str) -> list[dict]:
    try:
        value = json.loads(Path(text).read_text() if text.endswith(".json") and Path(text).is_file() else text)
    except (json.JSONDecodeError, OSError) as e:
        raise argparse.ArgumentTypeError(f"--stacks: not a JSON list or JSON file ({e})") from None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise argparse.ArgumentTypeError("--stacks: expected a JSON list of objects")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--demo", action="store_true",
                   help=f"run on the simulated demo survey (written under --out when absent) with a "
                        f"{DEMO_MODEL['image_size']}-pixel store; alone, it trains {DEMO_MAX_STEPS} steps or "
                        f"{DEMO_MAX_MINUTES:g} minutes, whichever ends first")
    p.add_argument("--n", "--demo-n", dest="demo_n", type=int, default=DEMO_N, help="galaxies in the demo survey")
    p.add_argument("--demo-seed", type=int, default=0, help="seed of the demo survey")
    p.add_argument("--cutout-size", "--demo-size", dest="demo_size", type=int, default=424,
                   help="demo cutout side in pixels (424 as Galaxy Zoo)")
    p.add_argument("--catalog", type=Path, help="survey catalogue (parquet, CSV or FITS)")
    p.add_argument("--images", type=Path, help="image root; catalogue paths are relative to it")
    p.add_argument("--out", type=Path, default=Path("demo-output"), help="output directory (default demo-output)")
    p.add_argument("--config", type=Path, help="YAML run config (model/loss/train); the store's size is model.image_size")
    p.add_argument("--max-epochs", type=int, help="training budget: override train.max_epochs")
    p.add_argument("--max-minutes", type=float,
                   help=f"training budget: wall-clock minutes (--demo without --config or --max-epochs: "
                        f"{DEMO_MAX_MINUTES:g}, or {DEMO_MAX_STEPS} steps if sooner)")
    p.add_argument("--shard-size", type=int, default=None,
                   help=f"objects per store shard and per task (default {SHARD_SIZE}; with --demo, fewer when that "
                        "gives every worker a shard of the survey)")
    p.add_argument("--stacks", type=_stacks, default=None,
                   help='stack selections as JSON (or a .json file): [{"name": "flat", "where": "moment_axis_ratio '
                        '< 0.4", "method": "median", "bin_by": null, "bins": 5}, ...]; default: flows.galaxy_codae.DEFAULT_STACKS')
    p.add_argument("--cluster", help="Dask cluster: a scheduler address or a dask-jobqueue YAML (default: a local cluster)")
    p.add_argument("--workers", type=int, default=2,
                   help="processes working in parallel: local Dask workers, or SLURM jobs with --cluster (default 2)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="inference device (default auto)")


def _plain_demo(args: argparse.Namespace) -> bool:
    return args.demo and args.config is None and args.max_epochs is None and args.max_minutes is None


def run_config(args: argparse.Namespace) -> str | dict | None:
    """The flow's ``config``: ``--config``, or :data:`DEMO_MODEL` and :data:`DEMO_TRAIN` for a demo (with
    :data:`DEMO_MAX_STEPS` when no budget is given), or None (the defaults)."""
    if args.config is not None:
        return str(args.config)
    if not args.demo:
        return None
    budget = {"max_steps": DEMO_MAX_STEPS, "max_epochs": DEMO_MAX_EPOCHS} if _plain_demo(args) else {}
    return {"model": dict(DEMO_MODEL), "train": {**DEMO_TRAIN, **budget}}


def training_budget(args: argparse.Namespace) -> tuple[int | None, float | None]:
    """``(max_epochs, max_minutes)`` for the flow: as given, or :data:`DEMO_MAX_MINUTES` for a plain ``--demo``."""
    if _plain_demo(args):
        return None, DEMO_MAX_MINUTES
    return args.max_epochs, args.max_minutes


def shard_size(args: argparse.Namespace) -> int:
    """``--shard-size``, or :data:`SHARD_SIZE`; a demo survey smaller than that is split over the workers
    (one ingest and one inference task each), so no core waits while another does all the work."""
    if args.shard_size is not None:
        return args.shard_size
    if args.demo:
        per_worker = math.ceil(args.demo_n / max(args.workers, 1))
        return min(SHARD_SIZE, CHUNK_SIZE * max(1, math.ceil(per_worker / CHUNK_SIZE)))
    return SHARD_SIZE


def run(args: argparse.Namespace) -> int:
    from pipeline.errors import BadInputError

    if not args.demo and (args.catalog is None or args.images is None):
        raise BadInputError("give --catalog and --images, or --demo")
    # Before Prefect is imported: its settings are read once, at import.
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    from flows.galaxy_codae import galaxy_codae
    from pipeline.run_summary import print_summary

    max_epochs, max_minutes = training_budget(args)
    t0 = time.monotonic()
    result = galaxy_codae(
        catalog=None if args.catalog is None else str(args.catalog),
        images=None if args.images is None else str(args.images),
        out=str(args.out),
        demo=args.demo,
        demo_n=args.demo_n,
        demo_seed=args.demo_seed,
        demo_size=args.demo_size,
        config=run_config(args),
        max_epochs=max_epochs,
        max_minutes=max_minutes,
        shard_size=shard_size(args),
        stacks=args.stacks,
        cluster=args.cluster,
        workers=args.workers,
        device=args.device,
    )
    print_summary(result, time.monotonic() - t0)
    return 0
