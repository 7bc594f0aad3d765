"""``galaxy-codae run``: the whole flow (ingest, train, infer, stack, report) in one process.

Runs the Prefect flow ``galaxy-codae`` (:mod:`flows.galaxy_codae`) without a server: Prefect's
ephemeral mode starts a temporary API in the background for the length of the run (its database
is ``$PREFECT_HOME/prefect.db``).  Set ``PREFECT_API_URL`` to record the run on a real server
instead.  Results are cached under ``OUT/.prefect-results``: run the same command again after a
failure or a kill and the finished shards and a finished training are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

EXAMPLES = """\
examples:
  galaxy-codae run --demo --out demo-output                      # simulated survey, generated when absent
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
    p.add_argument("--demo", action="store_true", help="run on the simulated demo survey (written under --out when absent)")
    p.add_argument("--n", "--demo-n", dest="demo_n", type=int, default=2000, help="galaxies in the demo survey")
    p.add_argument("--demo-seed", type=int, default=0, help="seed of the demo survey")
    p.add_argument("--cutout-size", "--demo-size", dest="demo_size", type=int, default=424,
                   help="demo cutout side in pixels (424 as Galaxy Zoo)")
    p.add_argument("--catalog", type=Path, help="survey catalogue (parquet, CSV or FITS)")
    p.add_argument("--images", type=Path, help="image root; catalogue paths are relative to it")
    p.add_argument("--out", type=Path, default=Path("demo-output"), help="output directory (default demo-output)")
    p.add_argument("--config", type=Path, help="YAML run config (model/loss/train); the store's size is model.image_size")
    p.add_argument("--max-epochs", type=int, help="training budget: override train.max_epochs")
    p.add_argument("--max-minutes", type=float, help="training budget: wall-clock minutes")
    p.add_argument("--shard-size", type=int, default=1024, help="objects per store shard and per task (default 1024)")
    p.add_argument("--stacks", type=_stacks, default=None,
                   help='stack selections as JSON (or a .json file): [{"name": "flat", "where": "moment_axis_ratio '
                        '< 0.4", "method": "median", "bin_by": null, "bins": 5}, ...]; default: flows.galaxy_codae.DEFAULT_STACKS')
    p.add_argument("--cluster", help="Dask cluster: a scheduler address or a dask-jobqueue YAML (default: a local cluster)")
    p.add_argument("--workers", type=int, default=2,
                   help="processes working in parallel: local Dask workers, or SLURM jobs with --cluster (default 2)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="inference device (default auto)")


def run(args: argparse.Namespace) -> int:
    from pipeline.errors import BadInputError

    if not args.demo and (args.catalog is None or args.images is None):
        raise BadInputError("give --catalog and --images, or --demo")
    # Before Prefect is imported: its settings are read once, at import.
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    from flows.galaxy_codae import galaxy_codae

    result = galaxy_codae(
        catalog=None if args.catalog is None else str(args.catalog),
        images=None if args.images is None else str(args.images),
        out=str(args.out),
        demo=args.demo,
        demo_n=args.demo_n,
        demo_seed=args.demo_seed,
        demo_size=args.demo_size,
        config=None if args.config is None else str(args.config),
        max_epochs=args.max_epochs,
        max_minutes=args.max_minutes,
        shard_size=args.shard_size,
        stacks=args.stacks,
        cluster=args.cluster,
        workers=args.workers,
        device=args.device,
    )
    print(f"run: {result['n_ingested']} ingested, {result['n_rejected']} rejected, "
          f"{result['n_catalogued']} catalogued")
    print(f"catalogue  {result['catalogue']}")
    print(f"run dir    {result['run_dir']}")
    for s in result["stacks"]:
        print(f"stack      {s}")
    print(f"report     {result['report']}")
    return 0
