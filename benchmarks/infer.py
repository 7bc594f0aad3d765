"""Inference throughput: exported plain-torch model against the e2cnn model, and 1 vs 2 Dask workers.

Run: ``python benchmarks/infer.py [--n 512] [--size 64] [--minutes 0.5] [--dir DIR]``.
Builds a demo survey of ``--n`` galaxies, ingests it at ``--size`` pixels (shards of 128),
trains the default CODAE for ``--minutes`` (the weights do not change the speed), then

1. rows/s of :func:`pipeline.predict.predict_batch` on the whole store in this process with the
   exported model and with the e2cnn model (same batches, model already loaded);
2. wall time of :func:`pipeline.infer.infer_catalog` on a ``LocalCluster`` of 1 and of 2
   single-threaded worker processes (cluster started beforehand; the time includes each
   worker's one model load, the shard reads and the merge).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import RunConfig  # noqa: E402
from pipeline.data.ingest import ingest_survey  # noqa: E402
from pipeline.data.store import open_store  # noqa: E402
from pipeline.infer import infer_catalog, load_inference_model  # noqa: E402
from pipeline.predict import predict_batch  # noqa: E402
from pipeline.simulate.survey import write_demo_survey  # noqa: E402
from pipeline.train import train  # noqa: E402


def rows_per_s(model, images: np.ndarray, batch: int) -> float:
    t = time.perf_counter()
    with torch.inference_mode():
        for a in range(0, len(images), batch):
            predict_batch(model, torch.from_numpy(images[a:a + batch].astype(np.float32) / 255.0))
    return len(images) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--minutes", type=float, default=0.5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="bench_infer_"))
    write_demo_survey(root / "survey", args.n, seed=1, size=424, workers=2, progress=False)
    ingest_survey(root / "survey" / "catalog.parquet", root / "survey" / "images", root / "st.zarr",
                  size=args.size, shard_size=128, workers=1)
    cfg = RunConfig().replace(model={"image_size": args.size},
                              train={"max_minutes": args.minutes, "device": "cpu", "max_epochs": 50})
    train(cfg, root / "st.zarr", root / "run", progress=False)
    ckpt = root / "run" / "checkpoint.pt"
    st = open_store(root / "st.zarr")
    images = st.read_images(0, len(st))
    print(f"store: {len(st)} objects, {st.info.channels}x{st.info.size}x{st.info.size}; "
          f"torch threads {torch.get_num_threads()}; batch {args.batch}")

    plain, _, _ = load_inference_model(ckpt, device="cpu", export=True)
    e2, _, _ = load_inference_model(ckpt, device="cpu", export=False)
    rows_per_s(plain, images[: args.batch], args.batch)  # warm up
    rows_per_s(e2, images[: args.batch], args.batch)
    r_plain = rows_per_s(plain, images, args.batch)
    r_e2 = rows_per_s(e2, images, args.batch)
    print(f"in-process predict_batch: exported {r_plain:.1f} rows/s, e2cnn {r_e2:.1f} rows/s, "
          f"ratio {r_plain / r_e2:.2f}")

    from distributed import Client

    from pipeline.cluster import local_cluster

    times = {}
    for w in (1, 2):
        with local_cluster(w) as cluster, Client(cluster):
            t = time.perf_counter()
            infer_catalog(root / "st.zarr", ckpt, root / f"cat{w}.fits", scheduler=cluster.scheduler_address,
                          batch_size=args.batch, device="cpu", overwrite=True)
            times[w] = time.perf_counter() - t
        print(f"infer_catalog, LocalCluster of {w} worker(s): {times[w]:.1f} s, {len(st) / times[w]:.1f} rows/s")
    print(f"1 -> 2 workers speed-up: {times[1] / times[2]:.2f}x")


if __name__ == "__main__":
    main()
