"""``galaxy-codae evaluate``: disentanglement metrics of CODAE and the baselines.

    galaxy-codae evaluate --dataset xyrcs|dsprites|STACK --models codae,beta-vae,... --out DIR
        [--budget-minutes M] [--seeds K] [--first-seed S] [--n N] [--n-eval E] [--checkpoints kind=path,...]
        [--centred] [--image-size S] [--latent-dim D] [--key NAME] [--store PATH] [--overwrite]

Trains every model for every seed within the budget (per model and seed), scores the codes and
writes tables (CSV, markdown) and figures into DIR; see :mod:`pipeline.evaluate.run`.
STACK is an image stack file (.npy, .npz, FITS cube, .mrcs) read by
:mod:`pipeline.evaluate.scientific`; it is evaluated directly (no store needed), and ``--store``
also writes it as a Zarr store for ``galaxy-codae train``.  Without ground truth the metric
tables are skipped and latents are named by the centre of mass (x, y, angle, magnitude).
"""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """\
examples:
  galaxy-codae evaluate --dataset xyrcs --out eval-xyrcs --budget-minutes 10 --seeds 3
  galaxy-codae evaluate --dataset particles.mrcs --models codae --out eval-cryoem"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True,
                   help="xyrcs, dsprites (procedural) or an image stack file (.npy, .npz, .fits, .mrcs)")
    p.add_argument("--models", default="codae,beta-vae,dae,spatial-vae,target-vae,irl-inr",
                   help="comma-separated model kinds (default: CODAE and all five baselines)")
    p.add_argument("--out", required=True, type=Path, help="output directory for tables, figures and runs")
    p.add_argument("--budget-minutes", type=float, default=5.0, help="training wall-clock budget per model and seed")
    p.add_argument("--seeds", type=int, default=1, help="seeds per model (best and mean +- std are reported)")
    p.add_argument("--first-seed", type=int, default=0,
                   help="the first training seed; seeds run from it upwards (add seeds to an earlier study)")
    p.add_argument("--n", type=int, default=5000, help="synthetic images to generate (stacks are used whole)")
    p.add_argument("--n-eval", type=int, default=2000, help="images scored (evenly spread over the data)")
    p.add_argument("--checkpoints", default="", help="kind=path,... checkpoints used instead of training")
    p.add_argument("--centred", action="store_true",
                   help="centred stack (diffraction): centre-of-mass orientation prior, no centroid learning")
    p.add_argument("--image-size", type=int, default=64, help="images are resized to this many pixels per side")
    p.add_argument("--latent-dim", type=int, help="content latents of the pose models (default: from the factors)")
    p.add_argument("--batch-size", type=int, help="training batch size (default 32, or the --config's)")
    p.add_argument("--config", type=Path,
                   help="YAML run config whose model section sets the architecture (widths, kernels, hidden, ...; "
                        "kind, image size, channels and latents are set per model) and train section the optimiser")
    p.add_argument("--key", help="array name inside an .npz stack")
    p.add_argument("--store", type=Path, help="also write the loaded stack as a Zarr store here")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    p.add_argument("--overwrite", action="store_true", help="replace results galaxy-codae wrote in --out (and --store)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or lines")


def _checkpoints(spec: str) -> dict[str, Path]:
    from pipeline.errors import ConfigError

    out: dict[str, Path] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        kind, sep, path = item.partition("=")
        if not sep or not kind or not path:
            raise ConfigError(f"--checkpoints: expected kind=path, got {item!r}")
        out[kind.strip()] = Path(path.strip())
    return out


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from pipeline.config import RunConfig, load_config
    from pipeline.errors import ConfigError
    from pipeline.evaluate.datasets import make_eval_data
    from pipeline.evaluate.run import evaluate

    kinds = [k.strip() for k in args.models.split(",") if k.strip()]
    if args.n < 10 or args.n_eval < 10:
        raise ConfigError("--n and --n-eval must be at least 10")
    data = make_eval_data(args.dataset, n=args.n, seed=args.seed, size=args.image_size, centred=args.centred,
                          key=args.key)
    if args.store is not None:
        if data.factors is not None:
            raise ConfigError("--store is for image stacks; XYRCS and dSprites are generated in memory")
        from pipeline.evaluate.scientific import write_store

        write_store(data.images, args.store, source=str(args.dataset), overwrite=args.overwrite)
    base = load_config(args.config) if args.config is not None else RunConfig()
    batch = args.batch_size if args.batch_size is not None else (base.train.batch_size if args.config else 32)
    train = replace(base.train, batch_size=min(batch, len(data.images)), checkpoint_every=1_000_000)
    result = evaluate(data, kinds, args.out, seeds=args.seeds, first_seed=args.first_seed,
                      budget_minutes=args.budget_minutes,
                      n_eval=args.n_eval, checkpoints=_checkpoints(args.checkpoints), latent_dim=args.latent_dim,
                      base_model=base.model, base_train=train, overwrite=args.overwrite, progress=not args.quiet)
    if not result.summary.empty:
        best = result.summary[result.summary.setting == "with_pose"][["model", "mean_best", "mean_mean", "mean_std"]]
        for _, r in best.iterrows():
            print(f"evaluate: {r.model:12s} mean of eight metrics with pose: best {r.mean_best:.3f}, "
                  f"over seeds {r.mean_mean:.3f} ± {r.mean_std:.3f}")
    print(f"evaluate: results in {result.out}")
    return 0
