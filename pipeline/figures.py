"""Training figures: loss curves, reconstruction grid, latent traversals (PNG, matplotlib Agg).

Every figure has a title and labelled axes; curves carry markers, so a run that logged one row
still shows its point.  Traversals label each row with its latent (or pose factor) and each
panel with the value it takes there.  PNGs carry ``Software: galaxy-codae <version>``.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from catalogs.atomic import atomic_path  # noqa: E402
from pipeline import __version__  # noqa: E402
from pipeline.geometry import warp_to_view  # noqa: E402

__all__ = ["training_figures", "loss_curves", "loss_figure", "reconstruction_grid", "latent_traversals",
           "traversal_figure"]

#: loss terms drawn, when the metrics rows have them (label, key).
_TERMS = (("total", "loss"), ("reconstruction", "reconstruction"), ("centroid", "centroid"),
          ("orientation", "orientation"), ("direction", "direction"), ("aligned", "aligned"))
_PNG = {"Software": f"galaxy-codae {__version__}"}


def _save(fig, path: Path, dpi: int) -> Path:
    try:
        with atomic_path(path) as tmp:  # a reader never sees half a figure
            fig.savefig(tmp, format="png", dpi=dpi, metadata=_PNG)
    finally:
        plt.close(fig)
    return path


def _to_rgb(img: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, 3) or (H, W) for imshow (display order: row 0 at top)."""
    a = img.detach().float().clamp(0, 1).cpu().numpy()
    return a[0] if a.shape[0] == 1 else np.moveaxis(a[:3], 0, -1)


def _show(ax, img: torch.Tensor) -> None:
    a = _to_rgb(img)
    ax.imshow(a, cmap="gray" if a.ndim == 2 else None, vmin=0, vmax=1, origin="upper", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def loss_curves(rows: list[dict], path: Path) -> Path:
    """Each loss term against step (log scale) and beta(t), with markers, whatever the number of rows."""
    return _save(loss_figure(rows), path, 90)


def loss_figure(rows: list[dict]):
    """The figure of :func:`loss_curves` (a matplotlib Figure; the caller closes it)."""
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    marker = "o" if len(rows) <= 60 else None  # markers while they can be told apart
    if rows:
        steps = np.array([r["step"] for r in rows], dtype=float)
        for label, key in _TERMS:
            if key not in rows[0]:
                continue
            vals = np.array([r[key] for r in rows], dtype=float)
            if not np.isfinite(vals).any() or (key != "loss" and not (vals > 0).any()):
                continue  # a term this model does not have (zero throughout)
            ax[0].plot(steps, np.clip(vals, 1e-12, None), marker=marker, markersize=3, label=label)
        ax[1].plot(steps, [r["beta"] for r in rows], color="k", marker=marker, markersize=3)
        if len(rows) == 1:  # one point: give the axes some width around it
            for a in ax:
                a.set_xlim(steps[0] - 1, steps[0] + 1)
        ax[0].legend(fontsize=8)
    else:
        for a in ax:
            a.text(0.5, 0.5, "no rows logged yet", ha="center", va="center", transform=a.transAxes)
    ax[0].set_yscale("log")
    ax[0].set_xlabel("optimiser step")
    ax[0].set_ylabel("loss (mean over the logging interval)")
    ax[0].set_title("Loss terms")
    ax[1].set_xlabel("optimiser step")
    ax[1].set_ylabel("beta")
    ax[1].set_title("beta(t): weight of the image-moment loss")
    fig.suptitle(f"Training: {len(rows)} logged step(s)" + (f", last step {rows[-1]['step']}" if rows else ""),
                 fontsize=10)
    fig.tight_layout()
    return fig


@torch.no_grad()
def reconstruction_grid(model, images: torch.Tensor, path: Path, *, title: str | None = None) -> Path:
    """Rows: input, same-view reconstruction, aligned reconstruction; one column per image."""
    out = model(images)
    n = images.shape[0]
    fig, axes = plt.subplots(3, n, figsize=(1.4 * n, 4.8), squeeze=False)
    for j in range(n):
        for i, img in enumerate((images[j], out.same_view[j], out.aligned[j])):
            _show(axes[i][j], img)
    for i, name in enumerate(("input", "same view", "aligned")):
        axes[i][0].set_ylabel(name, fontsize=8)
    fig.suptitle(title or "Reconstructions: input, same view, aligned (centred, along +x)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path, 90)


def _angle_label(value: float) -> str:
    return f"{value:+.2f}"


def latent_traversals(model, image: torch.Tensor, path: Path, *, steps: int = 7, title: str | None = None) -> Path:
    """Vary one latent at a time and the pose (see :func:`traversal_figure`); write the PNG."""
    return _save(traversal_figure(model, image, steps=steps, title=title), path, 80)


@torch.no_grad()
def traversal_figure(model, image: torch.Tensor, *, steps: int = 7, title: str | None = None):
    """Vary one latent at a time over a full turn (Euler-encoded latents are periodic) and the pose.

    Rows z_0..z_{D-1}: aligned reconstructions, each panel labelled with the latent's value
    (radians); rows x, y, theta: the aligned image moved across [-0.5, 0.5] (normalised) and
    turned over [0, 360) degrees, labelled likewise.
    """
    out = model(image[None])
    z0 = out.z[0]
    d = z0.shape[0]
    rows: list[tuple[str, torch.Tensor, list[str]]] = []
    offsets = torch.linspace(-math.pi, math.pi, steps, device=z0.device)
    for i in range(d):
        z = z0.repeat(steps, 1)
        z[:, i] = z0[i] + offsets
        rows.append((f"z_{i}", model.decode_aligned(z), [_angle_label(float(v)) for v in z[:, i]]))
    aligned = out.aligned.repeat(steps, 1, 1, 1)
    zero = torch.zeros(steps, device=z0.device)
    shift = torch.linspace(-0.5, 0.5, steps, device=z0.device)
    angles = torch.linspace(0, 2 * math.pi * (steps - 1) / steps, steps, device=z0.device)
    rows.append(("x", warp_to_view(aligned, zero, shift, zero), [f"{float(v):+.2f}" for v in shift]))
    rows.append(("y", warp_to_view(aligned, zero, zero, shift), [f"{float(v):+.2f}" for v in shift]))
    rows.append(("theta", warp_to_view(aligned, angles, zero, zero), [f"{math.degrees(float(v)):.0f} deg"
                                                                      for v in angles]))
    fig, axes = plt.subplots(len(rows), steps, figsize=(1.25 * steps, 1.35 * len(rows) + 0.6), squeeze=False)
    for r, (name, imgs, labels) in enumerate(rows):
        for c in range(steps):
            _show(axes[r][c], imgs[c])
            axes[r][c].set_title(labels[c], fontsize=6, pad=2)
        axes[r][0].set_ylabel(name, fontsize=8)
    fig.suptitle(title or "Latent traversals: each row varies one latent (radians) or the pose; "
                 "x, y normalised, theta in degrees", fontsize=9)
    fig.tight_layout()
    return fig


def training_figures(model, dataset, folder: Path, rows: list[dict], *, device=None, n: int = 8) -> list[Path]:
    """Write loss_curves.png, reconstructions.png and traversals.png into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    idx = np.linspace(0, len(dataset) - 1, min(n, len(dataset))).astype(int)
    images = torch.stack([dataset[int(i)][0] for i in idx]).to(device or "cpu")
    paths = [loss_curves(rows, folder / "loss_curves.png"),
             reconstruction_grid(model, images, folder / "reconstructions.png"),
             latent_traversals(model, images[0], folder / "traversals.png")]
    model.train(was_training)
    return paths
