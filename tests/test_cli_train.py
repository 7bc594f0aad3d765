"""`galaxy-codae train` on a real store: outputs, budget, resume, and one-line errors with exit 2."""

from __future__ import annotations

import pytest

from pipeline.checkpoint import load_checkpoint
from pipeline.cli import main
from pipeline.config import save_config


@pytest.fixture()
def small_config(demo_run, tmp_path):
    path = tmp_path / "small.yaml"
    save_config(demo_run["config"].replace(train={"max_epochs": 1, "log_every": 1}), path)
    return path


def test_train_command_reads_the_store_and_resumes(demo_run, small_config, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--store", str(demo_run["store"]), "--out", str(run), "--config", str(small_config),
                 "--quiet"]) == 0
    assert "finished after 6 steps" in capsys.readouterr().out
    for name in ("checkpoint.pt", "config.yaml", "metrics.csv", "run_info.yaml", "figures/loss_curves.png"):
        assert (run / name).exists(), name
    assert load_checkpoint(run / "checkpoint.pt")["store"]["kind"] == "zarr"
    # continue the same run for one more epoch
    assert main(["train", "--store", str(demo_run["store"]), "--out", str(run), "--resume", "--max-epochs", "2",
                 "--quiet"]) == 0
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 12


def test_train_command_errors_are_one_line_with_exit_2(demo_run, small_config, tmp_path, capsys):
    store = str(demo_run["store"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  max_epoch: 3\n")
    assert main(["train", "--store", store, "--out", str(tmp_path / "a"), "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("galaxy-codae train: error:") and "unknown config key train.max_epoch" in err[0]
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "checkpoint.pt").write_bytes(b"\x00garbage")
    assert main(["train", "--store", store, "--out", str(tmp_path / "b"), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a galaxy-codae checkpoint" in err[0].replace("readable ", "")
    assert main(["train", "--store", str(tmp_path / "nowhere.zarr"), "--out", str(tmp_path / "c"),
                 "--config", str(small_config)]) == 2
    assert "store not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["train", "--store", store])  # --out missing: usage error
    assert e.value.code == 2
