"""Training figures: loss curves, reconstruction grid, latent traversals (PNG, matplotlib Agg)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from pipeline.geometry import warp_to_view  # noqa: E402

__all__ = ["training_figures", "loss_curves", "reconstruction_grid", "latent_traversals"]


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
    """Each loss term against step, log scale, plus beta(t)."""
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    if rows:
        steps = [r["step"] for r in rows]
        for key in ("loss", "reconstruction", "centroid", "orientation", "aligned"):
            vals = np.array([r[key] for r in rows], dtype=float)
            ax[0].plot(steps, np.clip(vals, 1e-12, None), label=key)
        ax[1].plot(steps, [r["beta"] for r in rows], color="k")
    ax[0].set_yscale("log")
    ax[0].set_xlabel("step")
    if rows:
        ax[0].legend(fontsize=8)
    ax[0].set_title("loss terms")
    ax[1].set_xlabel("step")
    ax[1].set_title("beta (moment-loss weight)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


@torch.no_grad()
def reconstruction_grid(model, images: torch.Tensor, path: Path) -> Path:
    """Rows: input, same-view reconstruction, aligned reconstruction; one column per image."""
    out = model(images)
    n = images.shape[0]
    fig, axes = plt.subplots(3, n, figsize=(1.4 * n, 4.4), squeeze=False)
    for j in range(n):
        for i, img in enumerate((images[j], out.same_view[j], out.aligned[j])):
            _show(axes[i][j], img)
    for i, name in enumerate(("input", "same view", "aligned")):
        axes[i][0].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


@torch.no_grad()
def latent_traversals(model, image: torch.Tensor, path: Path, *, steps: int = 7) -> Path:
    """Vary one latent at a time over a full turn (Euler-encoded latents are periodic) and the pose.

    Rows z_0..z_{D-1}: aligned reconstructions; rows x, y, theta: the aligned image moved
    across [-0.5, 0.5] (normalised) and turned over [0, 360) degrees.
    """
    out = model(image[None])
    z0 = out.z[0]
    d = z0.shape[0]
    rows: list[tuple[str, torch.Tensor]] = []
    offsets = torch.linspace(-math.pi, math.pi, steps, device=z0.device)
    for i in range(d):
        z = z0.repeat(steps, 1)
        z[:, i] = z0[i] + offsets
        rows.append((f"z_{i}", model.decode_aligned(z)))
    aligned = out.aligned.repeat(steps, 1, 1, 1)
    zero = torch.zeros(steps, device=z0.device)
    shift = torch.linspace(-0.5, 0.5, steps, device=z0.device)
    angles = torch.linspace(0, 2 * math.pi * (steps - 1) / steps, steps, device=z0.device)
    rows.append(("x", warp_to_view(aligned, zero, shift, zero)))
    rows.append(("y", warp_to_view(aligned, zero, zero, shift)))
    rows.append(("theta", warp_to_view(aligned, angles, zero, zero)))
    fig, axes = plt.subplots(len(rows), steps, figsize=(1.2 * steps, 1.2 * len(rows)), squeeze=False)
    for r, (name, imgs) in enumerate(rows):
        for c in range(steps):
            _show(axes[r][c], imgs[c])
        axes[r][0].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


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
