"""Training images/s of the default CODAE at 64x64 on this machine, beside a plain-CNN autoencoder
of the same widths (same channels per block, ordinary convolutions, same decoder), measured in one
run, plus a one-step profile saying where the time goes.

    python benchmarks/train_throughput.py [--steps 20] [--batch 32] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn as nn

from pipeline.config import LossConfig, ModelConfig
from pipeline.geometry import warp_to_view
from pipeline.loss import codae_loss, moment_targets
from pipeline.model import CODAE
from pipeline.model.decoder import Decoder
from pipeline.model.output import ModelOutput


class PlainAutoencoder(nn.Module):
    """Same channel counts as CODAE's trunk (widths x N), plain Conv2d; same heads and decoder."""

    uses_moment_loss = True

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers: list[nn.Module] = []
        cin = cfg.channels
        for i, (w, k) in enumerate(zip(cfg.widths, cfg.kernels)):
            cout = w * cfg.group_order
            layers += [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            if i < len(cfg.widths) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = cout
        self.trunk = nn.Sequential(*layers)
        side = cfg.image_size // 2 ** (len(cfg.widths) - 1)
        self.pose = nn.Sequential(nn.Flatten(), nn.Linear(cin * side * side, cfg.hidden), nn.ReLU(),
                                  nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 4))
        self.content = nn.Sequential(nn.Linear(cin, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(),
                                     nn.Linear(cfg.hidden, cfg.latent_dim))
        self.decoder = Decoder(cfg)

    def forward(self, images: torch.Tensor) -> ModelOutput:
        h = self.trunk(images)
        p = self.pose(h)
        x, y = torch.tanh(p[:, 0]), torch.tanh(p[:, 1])
        d = p[:, 2:4] / p[:, 2:4].norm(dim=1, keepdim=True).clamp_min(1e-6)
        theta = torch.atan2(d[:, 1], d[:, 0])
        z = self.content(h.amax(dim=(2, 3)))
        aligned = torch.sigmoid(self.decoder(z))
        return ModelOutput(x=x, y=y, theta=theta, direction=d, z=z, aligned=aligned,
                           same_view=warp_to_view(aligned, theta, x, y))


def images_per_s(model: nn.Module, images: torch.Tensor, steps: int, device: torch.device) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_cfg = LossConfig()
    model.train()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)

    def step() -> None:
        targets = moment_targets(images, loss_cfg)
        with autocast:
            out = model(images)
        loss = codae_loss(out, images, targets, 0.5, loss_cfg).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * images.shape[0] / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-profile", action="store_true")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    cfg = ModelConfig(image_size=args.size)
    images = torch.rand(args.batch, 3, args.size, args.size, device=device)
    codae = CODAE(cfg).to(device)
    plain = PlainAutoencoder(cfg).to(device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"{os.cpu_count()}-core CPU"
    print(f"device: {name}; torch threads {torch.get_num_threads()}; batch {args.batch}; {args.size}x{args.size}")
    print(f"parameters: CODAE {sum(p.numel() for p in codae.parameters()) / 1e6:.2f} M, "
          f"plain CNN AE {sum(p.numel() for p in plain.parameters()) / 1e6:.2f} M")
    # interleave to share any drift in machine load fairly
    c1 = images_per_s(codae, images, args.steps, device)
    p1 = images_per_s(plain, images, args.steps, device)
    c2 = images_per_s(codae, images, args.steps, device)
    p2 = images_per_s(plain, images, args.steps, device)
    c, p = (c1 + c2) / 2, (p1 + p2) / 2
    print(f"training images/s: CODAE {c:.1f}, plain CNN AE {p:.1f}, ratio CODAE/plain {c / p:.2f}")
    if args.no_profile:
        return
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        images_per_s(codae, images, 2, device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print("one-step profile of CODAE (top operators):")
    print(prof.key_averages().table(sort_by=key, row_limit=12))


if __name__ == "__main__":
    main()
