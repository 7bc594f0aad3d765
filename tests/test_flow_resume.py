"""``galaxy-codae run`` killed with SIGKILL during training, then run again with the same arguments.

The rerun must serve the finished ingest tasks from Prefect's cache, resume training from its
last checkpoint (not from step 0) and finish the catalogue with every galaxy once.  Both runs use
Prefect's ephemeral mode in one temporary ``PREFECT_HOME`` (a real temporary server and SQLite
database), as a user's laptop would.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

CONFIG = {
    "model": {"image_size": 32, "widths": [2, 4, 4], "kernels": [5, 3, 3], "latent_dim": 4, "hidden": 32,
              "decoder_width": 8},
    # 30 steps per epoch, 600 in all; a checkpoint every 50 steps, so the kill lands between checkpoints.
    "train": {"max_epochs": 20, "batch_size": 4, "device": "cpu", "log_every": 25, "checkpoint_every": 50},
}


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PREFECT_HOME": str(home), "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"})
    return env


def _checkpoint_step(run_dirs: list[Path]) -> int:
    from pipeline.checkpoint import load_checkpoint

    for d in run_dirs:
        ck = d / "checkpoint.pt"
        if ck.is_file():
            try:
                return int(load_checkpoint(ck)["step"])
            except Exception:  # being replaced at this instant
                return 0
    return 0


def test_a_killed_run_resumes_from_the_cache_and_the_checkpoint(tmp_path):
    out = tmp_path / "out"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    cmd = [str(Path(sys.executable).with_name("galaxy-codae")), "run", "--demo", "--demo-n", "120", "--demo-size", "96",
           "--out", str(out), "--config", str(cfg), "--shard-size", "64", "--workers", "1"]
    env = _env(tmp_path / "prefect-home")
    log1 = open(tmp_path / "first.log", "wb")
    first = subprocess.Popen(cmd, env=env, stdout=log1, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    step = 0
    while step < 50:  # the first checkpoint, mid-training
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "training did not reach its first checkpoint in 300 s"
        time.sleep(0.5)
        step = _checkpoint_step(sorted((out / "runs").glob("*")) if (out / "runs").is_dir() else [])
    os.killpg(first.pid, signal.SIGKILL)  # the flow process, its temporary server and its workers
    first.wait(timeout=30)
    log1.close()
    assert not (out / "catalog.fits").exists()
    (run_dir,) = sorted((out / "runs").glob("*"))
    killed_at = _checkpoint_step([run_dir])
    assert 50 <= killed_at < 600

    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    text = second.stdout + second.stderr
    assert second.returncode == 0, text[-3000:]
    # Ingest: every task of the first run is served from the cache (Prefect names the state Cached).
    for name in ("plan-ingest", "ingest-block-0", "ingest-block-1", "write-store-shard-0", "finalize-ingest"):
        lines = [ln for ln in text.splitlines() if f"Task run '{name}" in ln and "Finished in state" in ln]
        assert lines and all("Cached" in ln for ln in lines), (name, lines)
    # Training resumed from the checkpoint: one row per logged step up to 20 epochs, and the clock
    # (elapsed_s, per process) starts again right after the checkpointed step, not at step 0.
    assert "train: resuming" in text
    with open(run_dir / "metrics.csv") as f:
        rows = [(int(r["step"]), float(r["elapsed_s"])) for r in csv.DictReader(f)]
    steps = [s for s, _ in rows]
    assert steps == list(range(25, 601, 25))
    restarts = [s for (s, e), (_, e0) in zip(rows[1:], rows[:-1]) if e < e0]
    assert restarts == [killed_at + 25], (killed_at, rows)
    from catalogs.fits_io import open_catalog

    ids = [str(v) for v in open_catalog(out / "catalog.fits").read_arrays(["id"])["id"]]
    assert len(ids) == 120 and len(set(ids)) == 120
    # the run ends with its summary on stdout: counts, pose agreement, paths, next commands
    summary = second.stdout[second.stdout.index("galaxy-codae run: done"):]
    assert "120 ingested, 0 rejected, 120 catalogued" in summary
    assert "median |pa_deg - moment_pa_deg|" in summary and str(out / "report.html") in summary
    assert "galaxy-codae query " in summary and "galaxy-codae similar " in summary
