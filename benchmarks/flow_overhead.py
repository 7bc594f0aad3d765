"""Orchestration overhead: the galaxy-codae flow against the same library calls made directly.

One process, one survey, one config; both paths write into their own folders:

* direct: ``ingest_survey`` -> ``train`` -> ``infer_catalog`` -> ``stack_catalog`` per selection,
  with the same number of Dask workers as the flow;
* flow: ``flows.galaxy_codae.galaxy_codae`` in Prefect's ephemeral mode (its temporary server's
  start-up is counted: it is what ``galaxy-codae run`` pays), cache empty;
* flow on a running server: the same flow in a child process whose ``PREFECT_API_URL`` points at a
  ``prefect server start`` launched (untimed) beforehand, as under ``prefect deployment run``.

Prints the wall times and the ratios flow / direct (target <= 1.3 at 2,000 galaxies)::

    python benchmarks/flow_overhead.py --n 2000 --max-epochs 1 --workers 2
    python benchmarks/flow_overhead.py --n 256 --tiny            # quick: small model, 1 epoch
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

#: This process's environment before any Dask cluster: starting a LocalCluster writes Dask's
#: ``distributed.nanny.pre-spawn-environ`` (OMP_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_=65536, ...)
#: into ``os.environ``, and a child started afterwards would inherit them (measured: training at
#: half speed in such a child).
_CLEAN_ENV = dict(os.environ)

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

TINY_MODEL = {"image_size": 32, "widths": [2, 4, 4], "kernels": [5, 3, 3], "latent_dim": 4, "hidden": 32,
              "decoder_width": 8}


def direct(survey: Path, out: Path, cfg, stacks: list[dict], workers: int, shard_size: int) -> float:
    from pipeline.data.ingest import ingest_survey
    from pipeline.infer import infer_catalog
    from pipeline.stack import stack_catalog
    from pipeline.train import train

    t0 = time.perf_counter()
    out.mkdir(parents=True)
    store = out / "store.zarr"
    ingest_survey(survey / "catalog.parquet", survey / "images", store, size=cfg.model.image_size, workers=workers,
                  shard_size=shard_size)
    result = train(cfg, store, out / "run", progress=False)
    catalogue = infer_catalog(store, result.checkpoint, out / "catalog.fits", workers=workers)
    (out / "stacks").mkdir()
    for s in stacks:
        stack_catalog(catalogue, store, out / "stacks" / f"{s['name']}.fits", where=s.get("where"),
                      method=s.get("method", "mean"), bin_by=s.get("bin_by"), bins=s.get("bins", 5))
    return time.perf_counter() - t0


def flow(survey: Path, out: Path, cfg, stacks: list[dict], workers: int, shard_size: int) -> float:
    t0 = time.perf_counter()
    from flows.galaxy_codae import galaxy_codae

    galaxy_codae(catalog=str(survey / "catalog.parquet"), images=str(survey / "images"), out=str(out),
                 config=cfg.to_dict(), stacks=stacks, workers=workers, shard_size=shard_size)
    return time.perf_counter() - t0


_SERVER_CHILD = """
import json, sys, time
from flows.galaxy_codae import galaxy_codae
a = json.loads(sys.argv[1])
t0 = time.perf_counter()
galaxy_codae(**a)
print("FLOW_SECONDS", time.perf_counter() - t0)
"""


def flow_on_running_server(survey: Path, out: Path, cfg, stacks: list[dict], workers: int, shard_size: int) -> float:
    """The flow against an already running Prefect server (as under ``prefect deployment run``): the
    server (SQLite in a temporary home, 127.0.0.1, a free port) is started first and not timed."""
    import signal
    import socket
    import subprocess
    import sys

    from flows.local_server import _healthy, server_env

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    home = out.with_name(out.name + "-prefect")
    (home / "prefect-home").mkdir(parents=True, exist_ok=True)
    prefect_env = {k: v for k, v in server_env(home, port).items() if k.startswith("PREFECT_") or k == "DO_NOT_TRACK"}
    env = {**_CLEAN_ENV, **prefect_env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    log = open(home / "server.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                               str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not _healthy(port):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prefect server did not start; see {home / 'server.log'}")
            time.sleep(0.5)
        args = {"catalog": str(survey / "catalog.parquet"), "images": str(survey / "images"), "out": str(out),
                "config": cfg.to_dict(), "stacks": stacks, "workers": workers, "shard_size": shard_size}
        with open(home / "flow.log", "wb") as flow_log:
            r = subprocess.run([sys.executable, "-c", _SERVER_CHILD, json.dumps(args)], env=env, stdout=subprocess.PIPE,
                               stderr=flow_log, text=True)
        if r.returncode:
            raise RuntimeError(f"the flow failed; see {home / 'flow.log'}")
        return float(r.stdout.split("FLOW_SECONDS")[-1].split()[0])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="galaxies in the demo survey (default 2000)")
    p.add_argument("--size", type=int, default=424, help="demo cutout side in pixels (default 424)")
    p.add_argument("--max-epochs", type=int, default=1, help="training epochs (default 1)")
    p.add_argument("--tiny", action="store_true", help="a small model at 32 pixels (the tests' config)")
    p.add_argument("--workers", type=int, default=2, help="Dask workers for both paths (default 2)")
    p.add_argument("--shard-size", type=int, default=1024, help="objects per shard / task (default 1024, the flow's)")
    p.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary one, removed)")
    args = p.parse_args()

    from flows.galaxy_codae import DEFAULT_STACKS
    from pipeline.config import RunConfig
    from pipeline.simulate.survey import write_demo_survey

    cfg = RunConfig().replace(train={"max_epochs": args.max_epochs, "device": "cpu"})
    if args.tiny:
        cfg = cfg.replace(model=TINY_MODEL)
    work = args.keep or Path(tempfile.mkdtemp(prefix="flow-overhead-"))
    try:
        survey = work / "survey"
        if not (survey / "catalog.parquet").is_file():
            write_demo_survey(survey, args.n, seed=0, size=args.size, workers=args.workers, progress=False)
        for old in (work / "direct", work / "flow", work / "flow-server", work / "flow-server-prefect"):  # a kept folder's earlier outputs (the survey is reused)
            shutil.rmtree(old, ignore_errors=True)
        t_direct = direct(survey, work / "direct", cfg, DEFAULT_STACKS, args.workers, args.shard_size)
        # The child-process measurement first: the ephemeral flow below leaves its temporary server
        # (and Prefect's service threads) in this process until it exits.
        t_server = flow_on_running_server(survey, work / "flow-server", cfg, DEFAULT_STACKS, args.workers,
                                          args.shard_size)
        t_flow = flow(survey, work / "flow", cfg, DEFAULT_STACKS, args.workers, args.shard_size)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"n": args.n, "size": args.size, "tiny": args.tiny, "max_epochs": args.max_epochs,
                      "workers": args.workers, "shard_size": args.shard_size, "direct_s": round(t_direct, 2),
                      "flow_s": round(t_flow, 2), "ratio": round(t_flow / t_direct, 3),
                      "flow_on_running_server_s": round(t_server, 2),
                      "ratio_on_running_server": round(t_server / t_direct, 3)}))


if __name__ == "__main__":
    main()
