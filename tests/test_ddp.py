"""Data-parallel training: two gloo processes on one machine, as on a GPU cluster with NCCL.

Batch norm under DDP must normalise with the statistics of the global batch: two ranks with
half a batch each must give the outputs, running statistics and gradients of one process with
the whole batch (:func:`pipeline.model.batchnorm.sync_batch_norm`), for CODAE's grouped batch
norm and for the plain ``nn.BatchNorm2d`` of the baselines (here the plain autoencoder).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pipeline.checkpoint import load_checkpoint, load_model
from pipeline.config import ModelConfig
from pipeline.model import build_model, model_state_dict
from pipeline.model.batchnorm import FieldBatchNorm2d, sync_batch_norm

ROOT = Path(__file__).resolve().parents[1]
SMALL = ModelConfig(image_size=32, widths=(2, 4, 4), kernels=(5, 3, 3), latent_dim=4, hidden=32, decoder_width=8)
SMALL_AE = replace(SMALL, kind="ae")
B = 8  # the whole batch; each of two ranks takes half


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _field_bn() -> FieldBatchNorm2d:
    torch.manual_seed(0)
    bn = FieldBatchNorm2d(3, 4)
    with torch.no_grad():
        bn.bn.weight.uniform_(0.5, 1.5)
        bn.bn.bias.uniform_(-0.5, 0.5)
    return bn


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, 12, 6, 5, generator=g) * 3.0 + 2.0  # (B, F*N, H, W), F=3 fields of N=4
    w = torch.randn(B, 12, 6, 5, generator=g)  # loss weights, so gradients are not trivial
    images = torch.rand(B, 3, 32, 32, generator=g)
    return x, w, images


def _run(bn: FieldBatchNorm2d, model: torch.nn.Module, ae: torch.nn.Module, x, w, images,
         rows: slice) -> dict[str, torch.Tensor]:
    """Training-mode forward and backward on ``rows`` of the batch; everything to compare."""
    xs = x[rows].clone().requires_grad_()
    y = bn.train()(xs)
    (y * w[rows]).sum().backward()
    out = model.train()(images[rows])
    ae_out = ae.train()(images[rows])
    (ae_out.aligned * images[rows]).sum().backward()
    ae_grads = {f"ae_grad/{k}": p.grad.clone() for k, p in ae.named_parameters() if "encoder" in k}
    buffers = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    ae_buffers = {k: v.clone() for k, v in ae.state_dict().items() if "running" in k}
    return {"y": y.detach(), "x_grad": xs.grad, "weight_grad": bn.bn.weight.grad, "bias_grad": bn.bn.bias.grad,
            "running_mean": bn.bn.running_mean.clone(), "running_var": bn.bn.running_var.clone(),
            "aligned": out.aligned.detach(), "z": out.z.detach(), **{f"model/{k}": v for k, v in buffers.items()},
            "ae_z": ae_out.z.detach(), "ae_recon": ae_out.aligned.detach(),
            **{f"ae/{k}": v for k, v in ae_buffers.items()}, **ae_grads}


def _rank(rank: int, world: int, port: int, out: str) -> None:
    """One rank: its half of the batch, without and then with synchronised batch norm."""
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        x, w, images = _inputs()
        half = slice(rank * (B // world), (rank + 1) * (B // world))
        for sync in (False, True):
            bn = _field_bn()
            torch.manual_seed(0)
            model = build_model(SMALL)
            torch.manual_seed(0)
            ae = build_model(SMALL_AE)
            if sync:
                sync_batch_norm(bn)
                sync_batch_norm(model)
                sync_batch_norm(ae)
            torch.save(_run(bn, model, ae, x, w, images, half), Path(out) / f"r{rank}-{'sync' if sync else 'local'}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> dict[str, tuple[dict, dict]]:
    """Both ranks' results, ``local`` (each its own statistics) and ``sync``."""
    out = tmp_path_factory.mktemp("ranks")
    mp.spawn(_rank, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    return {k: (torch.load(out / f"r0-{k}.pt"), torch.load(out / f"r1-{k}.pt")) for k in ("local", "sync")}


@pytest.fixture(scope="module")
def whole_batch() -> dict[str, torch.Tensor]:
    bn = _field_bn()
    torch.manual_seed(0)
    model = build_model(SMALL)
    torch.manual_seed(0)
    ae = build_model(SMALL_AE)
    x, w, images = _inputs()
    return _run(bn, model, ae, x, w, images, slice(0, B))


def test_two_ranks_with_half_a_batch_each_normalise_as_one_process_with_the_whole_batch(two_ranks, whole_batch):
    r0, r1 = two_ranks["sync"]
    ref = whole_batch
    for name in ("y", "x_grad", "aligned", "z", "ae_z", "ae_recon"):
        torch.testing.assert_close(torch.cat([r0[name], r1[name]]), ref[name], atol=2e-5, rtol=1e-4, msg=name)
    # parameter gradients: each rank holds its share, which DDP sums (and averages) across ranks
    for name in ("weight_grad", "bias_grad", *(k for k in ref if k.startswith("ae_grad/"))):
        torch.testing.assert_close(r0[name] + r1[name], ref[name], atol=1e-4, rtol=1e-4, msg=name)
    running = [k for k in ref if "running" in k]
    assert len(running) > 6  # the grouped batch norm and every batch norm of the model
    assert any(k.startswith("ae/") for k in running)  # the autoencoder's plain BatchNorm2d
    for name in running:
        torch.testing.assert_close(r0[name], ref[name], atol=1e-5, rtol=1e-5, msg=name)
        torch.testing.assert_close(r1[name], ref[name], atol=1e-5, rtol=1e-5, msg=name)


def test_without_synchronisation_each_rank_sees_only_its_half(two_ranks, whole_batch):
    """The control: the comparison above can fail (local statistics differ from the global ones)."""
    r0, r1 = two_ranks["local"]
    assert (torch.cat([r0["y"], r1["y"]]) - whole_batch["y"]).abs().max() > 1e-2
    assert (r0["running_var"] - r1["running_var"]).abs().max() > 1e-3
    assert (torch.cat([r0["ae_z"], r1["ae_z"]]) - whole_batch["ae_z"]).abs().max() > 1e-4


def test_two_gloo_ranks_end_with_the_same_weights_and_running_statistics_and_a_loadable_checkpoint(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert any("running_var" in k for k in r0)
    for k in r0:  # weights and batch-norm running statistics alike
        torch.testing.assert_close(r0[k], r1[k], atol=1e-6, rtol=1e-5, msg=k)
    # each rank took half of every epoch: 64 images / 2 ranks / batch 8 = 4 steps per epoch
    assert (tmp_path / "rank0.steps").read_text() == "8 2"
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ck["world_size"] == 2 and ck["effective_batch_size"] == 16
    info = (tmp_path / "run" / "run_info.yaml").read_text()
    assert "effective_batch_size: 16" in info and "learning_rate: 0.001" in info
    model, _ = load_model(tmp_path / "run" / "checkpoint.pt")  # single-process load
    for k, v in model_state_dict(model).items():
        torch.testing.assert_close(v, r0[k], atol=0, rtol=0, msg=k)
