"""The trainer's fast paths: images held on the device, torch.compile with its eager fall-back,
loss terms summed on the device, and the learning-rate rule for larger batches."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import pipeline.compiled as compiled
from pipeline.checkpoint import load_checkpoint
from pipeline.config import ModelConfig, RunConfig, TrainConfig
from pipeline.data.dataset import StoreImageDataset
from pipeline.data.memory import ArrayDataset
from pipeline.data.on_device import DeviceImages, use_data_on_device
from pipeline.errors import ConfigError
from pipeline.model import build_model
from pipeline.schedules import learning_rate, peak_learning_rate
from pipeline.train import train
from pipeline.train_setup import EpochSampler
from tests.conftest import gaussian_ellipses

SMALL = ModelConfig(image_size=32, widths=(2, 4, 4), kernels=(5, 3, 3), latent_dim=4, hidden=32, decoder_width=8)


def _config(**train_changes) -> RunConfig:
    base = {"batch_size": 16, "max_epochs": 3, "log_every": 2, "checkpoint_every": 100, "seed": 7, "device": "cpu"}
    base.update(train_changes)
    return RunConfig(model=SMALL).replace(train=base)


@pytest.fixture(scope="module")
def data() -> ArrayDataset:
    imgs, _ = gaussian_ellipses(64, size=32, seed=4, max_shift=3)
    assert imgs.dtype == np.uint8
    return ArrayDataset(imgs)


def _assert_same_batches(dataset, n, batch_size, *, world=1):
    device_images = DeviceImages.from_dataset(dataset, torch.device("cpu"))
    for epoch in (0, 1):
        for rank in range(world):
            for skip in (0, 2):  # 2: a run resumed after two batches of the epoch
                sampler = EpochSampler(n, seed=3, epoch=epoch, rank=rank, world=world, skip=skip,
                                       batch_size=batch_size)
                torch.manual_seed(11)
                want = [(x.clone(), torch.as_tensor(k)) for x, k in
                        DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True)]
                rng_after_loader = torch.get_rng_state()
                torch.manual_seed(11)
                got = list(device_images.batches(sampler.indices, batch_size))
                assert torch.equal(torch.get_rng_state(), rng_after_loader)  # the same random stream afterwards
                assert len(got) == len(want) == n // world // batch_size - skip
                for (xw, kw), (xg, kg) in zip(want, got):
                    assert torch.equal(kg, kw)
                    assert xg.dtype == torch.float32 and torch.equal(xg, xw)


def test_device_batches_equal_the_dataloader_batches_in_memory(data):
    _assert_same_batches(data, len(data), 8)
    _assert_same_batches(data, len(data), 8, world=2)


def test_device_batches_equal_the_dataloader_batches_from_a_store(demo_run):
    full = StoreImageDataset(demo_run["store"])
    assert full.store.info.dtype == "uint8"
    _assert_same_batches(full, len(full), 8)
    # a dataset over some of the store's objects: keys are store indices, read out of order
    part = StoreImageDataset(demo_run["store"], indices=np.arange(len(full))[::-3][:40])
    device_images = DeviceImages.from_dataset(part, torch.device("cpu"), block=16)
    assert torch.equal(device_images.keys, torch.from_numpy(part.indices.copy()))
    _assert_same_batches(part, len(part), 8)


def test_training_with_images_on_the_device_is_the_same_run_and_resumes_exactly(tmp_path, data):
    loader = train(_config(data_on_device=False), data, tmp_path / "loader", progress=False)
    held = train(_config(data_on_device=True), data, tmp_path / "held", progress=False)
    assert loader.steps == held.steps == 12
    # stopped at step 5: mid-epoch and between two metrics rows (log_every 2), resumed on the device
    part = train(_config(data_on_device=True), data, tmp_path / "part", progress=False, stop_after_steps=5)
    assert part.steps == 5
    assert load_checkpoint(tmp_path / "part" / "checkpoint.pt")["log_count"] == 1
    train(_config(data_on_device=True), data, tmp_path / "part", resume=True, progress=False)
    a = load_checkpoint(tmp_path / "loader" / "checkpoint.pt")
    for name in ("held", "part"):
        b = load_checkpoint(tmp_path / name / "checkpoint.pt")
        for k, v in a["model"].items():
            assert torch.equal(v, b["model"][k]), (name, k)
        rows_a = list(csv.DictReader(open(tmp_path / "loader" / "metrics.csv")))
        rows_b = list(csv.DictReader(open(tmp_path / name / "metrics.csv")))
        assert [(r["step"], r["loss"], r["reconstruction"]) for r in rows_a] == \
               [(r["step"], r["loss"], r["reconstruction"]) for r in rows_b]


def test_metrics_rows_hold_the_mean_of_the_terms_since_the_previous_row(tmp_path, data):
    """log_every 1 records each step's terms; log_every 4 must record the mean of four of them."""
    one = train(_config(max_epochs=1, log_every=1, data_on_device=True), data, tmp_path / "one", progress=False)
    four = train(_config(max_epochs=1, log_every=4, data_on_device=True), data, tmp_path / "four", progress=False)
    assert one.steps == four.steps == 4
    rows1 = list(csv.DictReader(open(tmp_path / "one" / "metrics.csv")))
    rows4 = list(csv.DictReader(open(tmp_path / "four" / "metrics.csv")))
    assert len(rows1) == 4 and len(rows4) == 1
    for term in ("loss", "reconstruction", "centroid", "orientation"):
        mean = sum(float(r[term]) for r in rows1) / 4
        assert float(rows4[0][term]) == pytest.approx(mean, rel=1e-5), term
    assert len({r["loss"] for r in rows1}) == 4  # four different steps, so the mean is not any one of them


def test_auto_holds_images_on_a_gpu_only_and_only_when_they_fit(monkeypatch, data):
    cpu = torch.device("cpu")
    assert use_data_on_device("auto", data, cpu)[0] is False
    assert use_data_on_device(True, data, cpu)[0] is True
    assert use_data_on_device(False, data, cpu)[0] is False
    plain = torch.utils.data.TensorDataset(torch.zeros(4, 3, 8, 8))
    on, why = use_data_on_device(True, plain, cpu)
    assert on is False and "cannot be read in bulk" in why
    nbytes = 64 * 3 * 32 * 32  # uint8
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * nbytes + 8, 10 * nbytes))
    assert use_data_on_device("auto", data, torch.device("cuda"))[0] is True
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * nbytes - 8, 10 * nbytes))
    on, why = use_data_on_device("auto", data, torch.device("cuda"))
    assert on is False and "exceed 50%" in why


def test_data_on_device_config_values():
    assert TrainConfig().data_on_device == "auto" and TrainConfig().compile is False
    assert RunConfig.from_dict({"train": {"data_on_device": True}}).train.data_on_device is True
    with pytest.raises(ConfigError, match="data_on_device"):
        RunConfig.from_dict({"train": {"data_on_device": "always"}})


# ----------------------------------------------------------------------------- torch.compile


def _failing_backend(gm, example_inputs):
    raise RuntimeError("no compiler here")


def test_a_failing_compile_falls_back_to_eager_with_one_log_line(tmp_path, data, monkeypatch, capsys):
    eager = train(_config(max_epochs=1), data, tmp_path / "eager", progress=False)
    monkeypatch.setattr(compiled, "BACKEND", _failing_backend)
    res = train(_config(max_epochs=1, compile=True), data, tmp_path / "compiled", progress=False)
    assert res.steps == eager.steps == 4
    lines = [line for line in capsys.readouterr().err.splitlines() if "torch.compile" in line]
    assert len(lines) == 1 and "training eagerly" in lines[0] and "no compiler here" in lines[0]
    a, b = (load_checkpoint(tmp_path / d / "checkpoint.pt")["model"] for d in ("eager", "compiled"))
    for k, v in a.items():  # the failed step was redone eagerly: the same run
        assert torch.equal(v, b[k]), k
    assert res.model.trunk._compiled_call_impl is None and res.model.decoder._compiled_call_impl is None


def test_compile_that_cannot_be_set_up_leaves_the_model_eager(monkeypatch, capsys):
    def unavailable(*args, **kwargs):
        raise RuntimeError("torch.compile is not supported on this platform")

    monkeypatch.setattr(torch, "compile", unavailable)
    model = build_model(SMALL)
    assert compiled.compile_parts(model) == []
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot set up" in err[0]
    assert model.trunk._compiled_call_impl is None and model.decoder._compiled_call_impl is None


@pytest.mark.slow
# dynamo probes .grad on the non-leaf inputs it traces (torch 2.13), which warns; not our code
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")
def test_compiled_decoder_matches_eager(monkeypatch):
    """aot_eager traces through dynamo and AOT autograd without generating C++ (inductor would need
    minutes on 2 cores); outputs and gradients must match the eager model's."""
    monkeypatch.setattr(compiled, "BACKEND", "aot_eager")
    torch.manual_seed(0)
    model = build_model(SMALL).train()
    x = torch.rand(8, 3, 32, 32)
    ref = model(x)
    ref.same_view.square().mean().backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    assert compiled.compile_parts(model, ("decoder",)) == ["decoder"]
    out = model(x)
    out.same_view.square().mean().backward()
    torch.testing.assert_close(out.same_view, ref.same_view, rtol=1e-5, atol=1e-6)
    for k, g in grads.items():
        torch.testing.assert_close(dict(model.named_parameters())[k].grad, g, rtol=1e-4, atol=1e-6)
    torch._dynamo.reset()


# ----------------------------------------------------------------------------- learning rate for larger batches


def test_learning_rate_scaling_rules_and_warm_up():
    base = TrainConfig(lr=1e-3, lr_reference_batch=128, lr_final_fraction=0.05)
    assert peak_learning_rate(base, 1024) == 1e-3  # "none" keeps lr whatever the batch
    sqrt = TrainConfig(lr=1e-3, lr_reference_batch=128, lr_scaling="sqrt", warmup_steps=100)
    linear = TrainConfig(lr=1e-3, lr_reference_batch=128, lr_scaling="linear")
    assert peak_learning_rate(sqrt, 1024) == pytest.approx(1e-3 * math.sqrt(8))
    assert peak_learning_rate(linear, 1024) == pytest.approx(8e-3)
    peak = peak_learning_rate(sqrt, 1024)
    assert learning_rate(0.0, 0, sqrt, 1024) == pytest.approx(peak / 100)  # warm-up, first step
    assert learning_rate(0.0, 49, sqrt, 1024) == pytest.approx(peak / 2)
    assert learning_rate(0.0, 100, sqrt, 1024) == pytest.approx(peak)  # warm-up over
    assert learning_rate(1.0, 10_000, sqrt, 1024) == pytest.approx(0.05 * peak)  # cosine to the final fraction
    assert learning_rate(0.5, 10_000, base, 32) == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5))


def test_trainer_uses_the_scaled_learning_rate(tmp_path, data):
    cfg = _config(max_epochs=1, log_every=1, lr_scaling="linear", lr_reference_batch=8, warmup_steps=2)
    train(cfg, data, tmp_path / "run", progress=False)
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[0] == pytest.approx(learning_rate(0.0, 0, cfg.train, 16))
    assert lrs[1] == pytest.approx(learning_rate(0.25, 1, cfg.train, 16))
    assert lrs[2] == pytest.approx(learning_rate(0.5, 2, cfg.train, 16))
    assert lrs[2] == pytest.approx(2e-3 * (0.05 + 0.95 * 0.5))  # twice lr (batch 16 against 8), half-way down the cosine
