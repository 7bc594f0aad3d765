"""The training loop: checkpoints, exact resume, time budget, outputs."""

from __future__ import annotations

import csv

import pytest
import torch

from pipeline.checkpoint import load_checkpoint
from pipeline.config import ModelConfig, RunConfig
from pipeline.data.memory import ArrayDataset
from pipeline.errors import BadInputError, ConfigError
from pipeline.train import train
from tests.conftest import gaussian_ellipses

SMALL = ModelConfig(image_size=32, widths=(2, 4, 4), kernels=(5, 3, 3), latent_dim=4, hidden=32, decoder_width=8)


def _config(**train) -> RunConfig:
    base = {"batch_size": 16, "max_epochs": 3, "log_every": 2, "checkpoint_every": 100, "seed": 7}
    base.update(train)
    return RunConfig(model=SMALL).replace(train=base)


@pytest.fixture(scope="module")
def data() -> ArrayDataset:
    imgs, _ = gaussian_ellipses(64, size=32, seed=4, max_shift=3)
    return ArrayDataset(imgs)


def test_resume_ends_with_the_same_weights_as_an_unbroken_run(tmp_path, data):
    cfg = _config()
    full = train(cfg, data, tmp_path / "full", progress=False)
    assert full.steps == 12 and not full.stopped_early
    part = train(cfg, data, tmp_path / "part", progress=False, stop_after_steps=6)  # mid-epoch 2
    assert part.steps == 6 and part.stopped_early
    assert load_checkpoint(tmp_path / "part" / "checkpoint.pt")["step"] == 6
    resumed = train(cfg, data, tmp_path / "part", resume=True, progress=False)
    assert resumed.steps == 12
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "part" / "checkpoint.pt")
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    rows_a = list(csv.DictReader(open(tmp_path / "full" / "metrics.csv")))
    rows_b = list(csv.DictReader(open(tmp_path / "part" / "metrics.csv")))
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
    assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b]


def test_run_directory_contents(tmp_path, data):
    train(_config(max_epochs=2), data, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert (run / "config.yaml").read_text().startswith("model:")
    for name in ("loss_curves.png", "reconstructions.png", "traversals.png"):
        assert (run / "figures" / name).stat().st_size > 1000
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert {"loss", "reconstruction", "centroid", "orientation", "aligned", "beta"} <= set(rows[0])
    assert float(rows[0]["beta"]) > float(rows[-1]["beta"])  # the moment weight decays
    ck = load_checkpoint(run / "checkpoint.pt")
    assert {"optimizer", "torch_rng", "step", "epoch", "config"} <= set(ck)
    assert not list(run.glob(".*.tmp"))


def test_time_budget_stops_cleanly_with_a_checkpoint(tmp_path, data):
    res = train(_config(max_epochs=50, max_minutes=0.0005), data, tmp_path / "run", progress=False)
    assert res.stopped_early and res.steps < 50 * 4
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == res.steps
    assert (tmp_path / "run" / "figures" / "traversals.png").exists()


def test_progress_lines_go_to_a_callable_with_the_time_left_of_the_budget(tmp_path, data):
    lines: list[str] = []  # what a Prefect task's logger receives in the flow
    train(_config(max_epochs=2, max_minutes=30), data, tmp_path / "run", progress=lines.append)
    assert lines[0] == "train: started"
    assert any(line.startswith("train: 1/8 steps") and "steps/s" in line and "ETA" in line for line in lines), lines
    assert any("loss" in line for line in lines), lines  # the loss, once a metrics row is logged
    assert lines[-1].startswith("train: 8/8 steps (100%)") and "elapsed" in lines[-1]
    lines.clear()
    train(_config(max_epochs=50, max_minutes=0.0005), data, tmp_path / "short", progress=lines.append)
    assert any("(time budget 00:00)" in line for line in lines), lines  # the budget ends before the steps


def test_existing_run_is_not_overwritten_and_resume_checks_config(tmp_path, data):
    train(_config(max_epochs=1), data, tmp_path / "run", progress=False)
    with pytest.raises(BadInputError, match="already holds a run"):
        train(_config(max_epochs=1), data, tmp_path / "run", progress=False)
    other = RunConfig(model=SMALL).replace(loss={"beta_start": 2.0}, train={"batch_size": 16})
    with pytest.raises(ConfigError, match="differs from the checkpoint"):
        train(other, data, tmp_path / "run", resume=True, progress=False)


def test_wrong_image_size_is_a_config_error(tmp_path, data):
    with pytest.raises(ConfigError, match="the model is configured for 3 x 64 x 64"):
        train(RunConfig(), data, tmp_path / "run", progress=False)


def test_cpu_training_uses_every_granted_cpu_even_after_a_dask_cluster_started(tmp_path, data):
    """A local Dask cluster sets OMP_NUM_THREADS=1 in its parent process; the trainer sets torch's
    threads itself: every CPU of the affinity mask by default, or ``train.cpu_threads``."""
    import os

    from distributed import LocalCluster

    from pipeline.device import available_cpus

    before, env = torch.get_num_threads(), dict(os.environ)
    try:
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40):
            assert os.environ.get("OMP_NUM_THREADS") == "1"  # what the nanny did to this process
        torch.set_num_threads(1)
        train(_config(max_epochs=1, device="cpu"), data, tmp_path / "all", progress=False)
        assert torch.get_num_threads() == available_cpus()
        train(_config(max_epochs=1, device="cpu", cpu_threads=1), data, tmp_path / "one", progress=False)
        assert torch.get_num_threads() == 1
        with pytest.raises(ConfigError, match="cpu_threads"):
            _config(cpu_threads=0)
    finally:
        torch.set_num_threads(before)
        os.environ.clear()
        os.environ.update(env)
