"""Data-parallel training: two gloo processes on one machine (torchrun), as on a GPU cluster with NCCL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from pipeline.checkpoint import load_checkpoint, load_model
from pipeline.model import model_state_dict

ROOT = Path(__file__).resolve().parents[1]


def test_two_gloo_ranks_end_with_the_same_weights_and_a_loadable_checkpoint(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    params = [k for k in r0 if "running" not in k and "num_batches" not in k]
    assert params
    for k in params:
        assert torch.equal(r0[k], r1[k]), k
    # each rank took half of every epoch: 64 images / 2 ranks / batch 8 = 4 steps per epoch
    assert (tmp_path / "rank0.steps").read_text() == "8 2"
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ck["world_size"] == 2 and ck["effective_batch_size"] == 16
    info = (tmp_path / "run" / "run_info.yaml").read_text()
    assert "effective_batch_size: 16" in info and "learning_rate: 0.001" in info
    model, _ = load_model(tmp_path / "run" / "checkpoint.pt")  # single-process load
    for k, v in model_state_dict(model).items():
        if k in params:
            assert torch.equal(v, r0[k]), k
