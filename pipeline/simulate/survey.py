"""Write a simulated survey in the Galaxy Zoo DECaLS layout (``galaxy-codae demo-survey``).

Layout (``../shared/CONTRACT.md``)::

    OUT/images/<first 4 chars of iauname>/<iauname>.jpg   424 x 424 RGB JPEG, north up, east left
    OUT/catalog.parquet   iauname, ra, dec, file_loc, petro_th50
    OUT/truth.parquet     iauname, x_pix, y_pix, pa_deg, theta_deg, axis_ratio, ... (GalaxyTruth.record)

``file_loc`` is relative to ``OUT/images`` (``"J073/J073013.60+242930.0.jpg"``).  Names
follow the IAU format ``JHHMMSS.ss+DDMMSS.s``; coordinates are drawn on that grid (0.01 s
of RA, 0.1 arcsec of Dec) so that name and coordinates agree exactly, uniformly on the sky
inside a DECaLS-like footprint (-20 < Dec < 34 deg, |b| > 20 deg).

Everything is decided by ``seed``: galaxy parameters from one stream, each galaxy's noise
from its own child seed, so the files are the same for any number of workers.  The
survey is written to a temporary sibling directory and renamed into place when complete.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from catalogs import atomic
from pipeline.errors import BadInputError
from pipeline.progress import Progress, Sink
from pipeline.simulate.galaxies import GZ_SIZE, GalaxyTruth, render_rgb, sample_galaxies
from pipeline.simulate.regimes import Scene, parse_regimes, render_scene_rgb, sample_scenes

__all__ = ["write_demo_survey", "iau_names", "sample_footprint", "CATALOG_COLUMNS", "JPEG_QUALITY"]

#: Columns of ``catalog.parquet``, in order.
CATALOG_COLUMNS: tuple[str, ...] = ("iauname", "ra", "dec", "file_loc", "petro_th50")
#: JPEG quality of the cutouts.
JPEG_QUALITY: int = 90
#: The ownership kind (:func:`catalogs.atomic.mark_owned`) of a demo survey: --overwrite replaces only such a folder.
SURVEY_KIND = "demo-survey"
_DEC_RANGE_DEG = (-20.0, 34.0)
_MIN_ABS_B_DEG = 20.0
_RA_STEP_DEG = 0.01 * 15.0 / 3600.0  # 0.01 s of time
_DEC_STEP_DEG = 0.1 / 3600.0  # 0.1 arcsec


def iau_names(ra_deg: Sequence[float], dec_deg: Sequence[float]) -> list[str]:
    """IAU names ``JHHMMSS.ss+DDMMSS.s`` for ICRS coordinates in degrees (astropy formatting)."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    c = SkyCoord(np.asarray(ra_deg, dtype=float) * u.deg, np.asarray(dec_deg, dtype=float) * u.deg)
    ra = np.atleast_1d(c.ra.to_string(unit=u.hourangle, sep="", precision=2, pad=True))
    dec = np.atleast_1d(c.dec.to_string(unit=u.deg, sep="", precision=1, alwayssign=True, pad=True))
    return [f"J{a}{d}" for a, d in zip(ra, dec)]


def sample_footprint(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` distinct (ra, dec) in degrees on the IAU-name grid, uniform on the sky in the footprint."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    ra_out: list[np.ndarray] = []
    dec_out: list[np.ndarray] = []
    seen: set[tuple[int, int]] = set()
    got = 0
    lo, hi = np.sin(np.deg2rad(_DEC_RANGE_DEG))
    while got < n:
        m = 2 * (n - got) + 16
        ra_i = rng.integers(0, round(360.0 / _RA_STEP_DEG), m)
        dec_i = np.round(np.rad2deg(np.arcsin(rng.uniform(lo, hi, m))) / _DEC_STEP_DEG).astype(np.int64)
        ra, dec = ra_i * _RA_STEP_DEG, dec_i * _DEC_STEP_DEG
        b = SkyCoord(ra * u.deg, dec * u.deg).galactic.b.deg
        keep = []
        for j in np.flatnonzero(np.abs(b) > _MIN_ABS_B_DEG):
            key = (int(ra_i[j]), int(dec_i[j]))
            if key not in seen and got + len(keep) < n:
                seen.add(key)
                keep.append(j)
        ra_out.append(ra[keep])
        dec_out.append(dec[keep])
        got += len(keep)
    return np.concatenate(ra_out), np.concatenate(dec_out)


def _render_chunk(job: tuple[str, list[tuple[str, GalaxyTruth | Scene, int]]]) -> int:
    """Render and write one chunk of galaxies (or regime scenes); returns how many were written."""
    from PIL import Image

    root, items = job
    for rel, truth, noise_seed in items:
        rng = np.random.default_rng(noise_seed)
        rgb = render_scene_rgb(truth, rng) if isinstance(truth, Scene) else render_rgb(truth, rng)
        Image.fromarray(rgb).save(os.path.join(root, rel), format="JPEG", quality=JPEG_QUALITY)
    return len(items)


def _progress(done_iter: Iterator[int], n: int, *, show: Sink) -> None:
    """Consume chunk counts, showing the galaxies written (:class:`pipeline.progress.Progress`)."""
    with Progress("demo-survey", n, unit="galaxies", sink=show) as bar:
        for k in done_iter:
            bar.update(k)


def write_demo_survey(out: Path, n: int, *, seed: int = 0, size: int = GZ_SIZE, sky_noise: float | None = None,
                      regime: str | None = None, workers: int = 1, overwrite: bool = False,
                      progress: Sink = True) -> Path:
    """Write ``n`` simulated galaxies in the Galaxy Zoo DECaLS layout under ``out``; return ``out``.

    ``size``: cutout size in pixels (424 as Galaxy Zoo; smaller only for quick tests).
    ``sky_noise``: r-band sky noise in nanomaggies per pixel for every galaxy (``None``:
    drawn per galaxy).  ``regime``: scenes of :mod:`pipeline.simulate.regimes` instead of isolated
    galaxies (a name, ``"mix"`` or ``"clean:0.5,star:0.5"``; DECaLS-depth noise, so not with
    ``sky_noise``); the truth then has ``regime``, ``theta_dir_deg`` and the added sources'
    columns.  ``workers`` > 1 renders in that many processes; the output does
    not depend on it.  An existing ``out`` is refused unless ``overwrite``.  ``progress``: a bar or
    lines on stderr (True), the lines passed to a callable (a logger), or nothing (:mod:`pipeline.progress`).
    Raises :class:`~pipeline.errors.BadInputError` on bad arguments or an existing output.
    """
    out = Path(out)
    if n < 1:
        raise BadInputError(f"demo survey needs n >= 1 galaxies, got {n}")
    if workers < 1:
        raise BadInputError(f"workers must be >= 1, got {workers}")
    if size < 16:
        raise BadInputError(f"cutout size must be >= 16 pixels, got {size}")
    if out.exists() and not overwrite:
        raise BadInputError(f"{out} already exists; pass --overwrite to replace it")
    atomic.check_may_replace(out, kinds=(SURVEY_KIND,), error=BadInputError)  # only a survey this project wrote
    if regime is not None:
        if sky_noise is not None:
            raise BadInputError("sky_noise and regime cannot be combined: regime scenes have DECaLS-depth noise")
        parse_regimes(regime)  # a bad name fails before any work

    children = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(children[0])
    ra, dec = sample_footprint(rng, n)
    names = iau_names(ra, dec)
    truths: Sequence[GalaxyTruth | Scene] = (sample_galaxies(rng, n, size=size, sky_noise=sky_noise)
                                             if regime is None else sample_scenes(rng, n, regime, size=size))
    noise_seeds = np.random.default_rng(children[1]).integers(0, 2**63 - 1, n)
    file_loc = [f"{name[:4]}/{name}.jpg" for name in names]

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        images = tmp / "images"
        for d in sorted({loc[:4] for loc in file_loc}):
            (images / d).mkdir(parents=True, exist_ok=True)
        items = [(loc, t, int(s)) for loc, t, s in zip(file_loc, truths, noise_seeds)]
        chunk = max(1, min(32, n // (4 * workers) or 1))
        jobs = [(str(images), items[i:i + chunk]) for i in range(0, n, chunk)]
        if workers == 1:
            _progress((_render_chunk(j) for j in jobs), n, show=progress)
        else:
            # spawn: fresh interpreters, nothing inherited from a parent that may hold torch threads
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(min(workers, len(jobs))) as pool:
                _progress(pool.imap_unordered(_render_chunk, jobs), n, show=progress)

        targets = [t.target if isinstance(t, Scene) else t for t in truths]
        catalog = pd.DataFrame({"iauname": names, "ra": ra, "dec": dec, "file_loc": file_loc,
                                "petro_th50": [t.petro_th50 for t in targets]})
        catalog.to_parquet(tmp / "catalog.parquet", index=False)
        truth = pd.DataFrame([t.record() for t in truths])
        truth.insert(0, "iauname", names)
        truth.to_parquet(tmp / "truth.parquet", index=False)
        atomic.mark_owned(tmp, SURVEY_KIND)
        atomic.replace_dir(tmp, out, may_replace=lambda p: atomic.overwrite_refusal(p, kinds=(SURVEY_KIND,)))
    except FileExistsError as e:
        raise BadInputError(str(e)) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
