"""The CODAE paper's comparison on XYRCS and procedural dSprites at 64 x 64 (not CI).

Run: ``python benchmarks/paper.py [--budget-minutes M] [--seeds K] [--first-seed S] [--n N] [--n-eval E]
[--datasets xyrcs,dsprites] [--models ...] [--out DIR]``.

For each dataset: every model trains for ``--budget-minutes`` of CPU wall clock per seed through
:func:`pipeline.evaluate.run.evaluate` (the code behind ``galaxy-codae evaluate``), then prints

* the mean of the eight metrics with the pose factors (and without), best seed and mean +- std;
* the spread (circular std, degrees) of the moment orientation of each model's aligned
  reconstructions, per non-circular shape with a moment axis (XYRCS rectangles; dSprites
  ellipses and hearts; triangles and squares have isotropic second moments), with the number of
  reconstructions that show an object with an axis (``n_used/n``; "nan" when none does).  Not
  shown for beta-VAE and DAE, which have no aligned image.  Target for CODAE on
  XYRCS: under 5 degrees;
* whether the aligned reconstructions draw the shapes at all (:func:`shapes_drawn`: each
  shape's pose-free harmonics of orders 2 (the moment anisotropy), 3 and 4 within 0.1 of the
  inputs'), with the harmonics.  A decoder that
  draws one blurred blob for every image has a common axis too, so a small spread counts as
  alignment of *shapes* only where this says "shapes drawn".

The issue's targets (CODAE's mean above every baseline's; spread < 5 degrees) are stated for a
budget of several CPU minutes per model; a run at a smaller budget says so in its header.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from pipeline.evaluate.alignment import shapes_drawn  # noqa: E402
from pipeline.evaluate.datasets import make_eval_data  # noqa: E402
from pipeline.evaluate.run import evaluate  # noqa: E402
from pipeline.evaluate.training import NO_POSE_KINDS  # noqa: E402

ALL_MODELS = "codae,beta-vae,dae,spatial-vae,target-vae,irl-inr"
# Non-circular shapes; each spread is taken on the shape's strongest harmonic (axis, order 3 or 4).
SPREAD_SHAPES = {"xyrcs": ("rectangle", "triangle"), "dsprites": ("ellipse", "heart", "square")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget-minutes", type=float, default=10.0, help="CPU training budget per model and seed")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--first-seed", type=int, default=0, help="seeds run from this one upwards")
    p.add_argument("--n", type=int, default=5000, help="images generated per dataset (train = evaluation set)")
    p.add_argument("--n-eval", type=int, default=2000, help="images scored")
    p.add_argument("--datasets", default="xyrcs,dsprites")
    p.add_argument("--models", default=ALL_MODELS)
    p.add_argument("--out", type=Path, help="keep the outputs here (default: a temporary directory)")
    args = p.parse_args(argv)
    kinds = [k for k in args.models.split(",") if k]
    out_root = args.out or Path(tempfile.mkdtemp(prefix="paper-bench-"))
    print(f"# CODAE paper comparison: {args.budget_minutes:g} CPU min per model and seed, {args.seeds} seed(s) from {args.first_seed}, "
          f"{args.n} images, {args.n_eval} scored; torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs; outputs in {out_root}")
    if args.budget_minutes < 5:
        print("# SMALL-BUDGET RUN: far below the budget the targets are stated for; numbers are not the paper's.")
    for name in [d for d in args.datasets.split(",") if d]:
        t0 = time.monotonic()
        data = make_eval_data(name, n=args.n, seed=0, size=64)
        res = evaluate(data, kinds, out_root / name, seeds=args.seeds, first_seed=args.first_seed,
                       budget_minutes=args.budget_minutes,
                       n_eval=args.n_eval, overwrite=True, progress=False)
        s = res.summary
        print(f"\n## {name} ({(time.monotonic() - t0) / 60:.1f} min)\n")
        print("| model | steps | mean, with pose (best) | with pose (mean ± std) | mean, without pose (best) |"
              " orientation spread of aligned (deg) |")
        print("|---|---|---|---|---|---|")
        for kind in kinds:
            w = s[(s.model == kind) & (s.setting == "with_pose")].iloc[0]
            wo = s[(s.model == kind) & (s.setting == "without_pose")].iloc[0]
            steps = int(res.runs[(res.runs.model == kind)].steps.max())
            al = res.alignment[(res.alignment.model == kind) & res.alignment.label.isin(SPREAD_SHAPES[name])]
            spread = ", ".join(f"{r.label} {r.spread_deg:.1f} ({r.n_used}/{r.n})" for r in al.itertuples())
            if kind in NO_POSE_KINDS:  # their "aligned" image is the same view: nothing was aligned
                spread = "n/a (no pose)"
            print(f"| {kind} | {steps} | {w.mean_best:.3f} | {w.mean_mean:.3f} ± {w.mean_std:.3f} | "
                  f"{wo.mean_best:.3f} | {spread} |")
        print()
        for kind in kinds:
            if kind in NO_POSE_KINDS:
                continue
            al = res.alignment[res.alignment.model == kind]
            aniso = ", ".join(f"{r.label} {r.mean_anisotropy:.2f}/{r.mean_harmonic_3:.2f}/{r.mean_harmonic_4:.2f} "
                              f"(inputs {r.input_anisotropy:.2f}/{r.input_harmonic_3:.2f}/{r.input_harmonic_4:.2f})"
                              for r in al.itertuples())
            verdict = "shapes drawn" if shapes_drawn(al) else "shapes NOT drawn: the spread is not evidence of alignment"
            print(f"aligned shape harmonics 2/3/4, {kind}: {aniso}: {verdict}")
        codae = s[(s.model == "codae") & (s.setting == "with_pose")]
        if not codae.empty:
            others = s[(s.model != "codae") & (s.setting == "with_pose")]
            top = others.mean_best.max() if not others.empty else float("nan")
            print(f"\nCODAE best mean {codae.mean_best.iloc[0]:.3f} vs best baseline {top:.3f}: "
                  f"{'CODAE higher' if codae.mean_best.iloc[0] > top else 'CODAE NOT higher'}")
        print(f"tables: {res.out / 'metrics.md'}; figures: {res.out / 'figures'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
