"""Shared fixtures: small analytic images with known pose, made on the fly (no network, no files)."""

from __future__ import annotations

import os

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import shutil  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402

from pipeline.simulate.analytic import gaussian_ellipses  # noqa: E402,F401  (re-exported for tests)


def in_ci() -> bool:
    """True under continuous integration: the ``CI`` variable set (as GitHub Actions, GitLab CI and
    most runners do) to anything but empty, ``0``, ``false`` or ``no``."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def fitsverify(path) -> str:
    """Run Debian's ``fitsverify`` on ``path`` and require 0 warnings and 0 errors; returns its report.

    The one rule for every FITS check: without ``fitsverify`` the test is skipped on a
    developer's machine and fails under CI (:func:`in_ci`), which installs it.
    """
    exe = shutil.which("fitsverify")
    if exe is None:
        if in_ci():
            pytest.fail("fitsverify is not installed, and CI must run it (apt-get install fitsverify)")
        pytest.skip("fitsverify is not installed (CI installs it: apt-get install fitsverify)")
    report = subprocess.run([exe, str(path)], capture_output=True, text=True, check=False).stdout
    assert "Verification found 0 warning(s) and 0 error(s)" in report, report
    return report


@pytest.fixture(scope="session")
def ellipses():
    return gaussian_ellipses(256, seed=1)


# ---------------------------------------------------------------- demo survey, store and a short run (infer, stack)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """A 96-galaxy demo survey (128-pixel cutouts), its store (32 pixels, 3 shards of 32) and a short run.

    Built once per session (about 15 s on 2 busy cores).  Returns a dict: ``survey`` (root),
    ``store``, ``checkpoint``, ``truth`` (pandas DataFrame indexed by iauname), ``config``.
    """
    import pandas as pd

    from pipeline.config import ModelConfig, RunConfig
    from pipeline.data.ingest import ingest_survey
    from pipeline.simulate.survey import write_demo_survey
    from pipeline.train import train

    root = tmp_path_factory.mktemp("demo_run")
    survey = write_demo_survey(root / "survey", 96, seed=3, size=128, progress=False)
    store = root / "store.zarr"
    ingest_survey(survey / "catalog.parquet", survey / "images", store, size=32, crop=64, shard_size=32)
    model = ModelConfig(image_size=32, widths=(2, 4, 4), kernels=(5, 3, 3), latent_dim=4, hidden=32, decoder_width=8)
    config = RunConfig(model=model).replace(
        train={"batch_size": 16, "max_epochs": 3, "log_every": 100, "checkpoint_every": 1000, "seed": 0,
               "device": "cpu"})
    train(config, store, root / "run", progress=False)
    truth = pd.read_parquet(survey / "truth.parquet").set_index("iauname")
    return {"survey": survey, "store": store, "checkpoint": root / "run" / "checkpoint.pt", "truth": truth,
            "config": config}
