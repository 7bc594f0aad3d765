"""Survey regimes beyond the isolated galaxy: a neighbour, a star, a faint galaxy, a lopsided galaxy.

Each scene is one target galaxy of :mod:`pipeline.simulate.galaxies` (bulge + disk, GalSim,
DECaLS-like stretch) plus what the regime adds, in the same frame, PSF and pixel scale:

``clean``
    the target alone.
``neighbour``
    a second bulge + disk galaxy overlapping the target: separation 1.5-4 target half-light
    radii, r-band flux ratio (neighbour / target) log-uniform in [0.3, 2], half-light radius
    0.4-1 of the target's, its own shape, colours and position angle.
``star``
    a point source (the PSF) at 1.5-4 half-light radii, r-band flux ratio (star / galaxy)
    log-uniform in [0.3, 3], stellar colours (g - r in [0.4, 1.4], r - z = 0.55 (g - r) +- 0.05).
``faint``
    the target at low surface brightness: mean r-band surface brightness inside the
    half-light radius uniform in [24, 25.5] mag / arcsec^2 (the Galaxy Zoo DECaLS sample is
    [20, 22.5] in :func:`~pipeline.simulate.galaxies.sample_galaxies`; low-surface-brightness
    galaxy samples start near 24), same noise as every regime.  Background-subtracted moments
    of the 64-pixel store images miss the axis by about 1.5 deg at 24 and 5 deg at 25 (median).
``lopsided``
    light added on one side of the major axis, half the scenes each kind: ``knot``, a compact
    star-forming clump (Gaussian, half-light radius 0.08-0.2 disk radii, 8-25 % of the target's
    r-band flux, blue: g - r in [0.1, 0.4]) at 0.6-1.5 major-axis disk half-light radii from the
    centre; or ``m1``, a one-sided (m = 1) disk asymmetry: a copy of the disk (its shape and
    colours) holding 10-25 % of the target's r-band flux, shifted by 0.3-0.7 major-axis disk
    half-light radii along the axis.

Truth (one row per scene, :meth:`Scene.record`)
-----------------------------------------------
``x_pix``/``y_pix``: the target's profile centre (bulge and disk centre), display frame of the
cutout (0-based, y down), whatever else is in the frame: a neighbour, a star or a knot never
moves it.  ``pa_deg``/``theta_deg``: the target's major axis (mod 180).  ``theta_dir_deg``: for
``lopsided`` scenes, the direction from the centre towards the added light, degrees CCW from +x
as displayed, [0, 360) (``theta_deg`` or ``theta_deg + 180``: the asymmetry lies along the major
axis); NaN where the galaxy has no direction.  ``regime`` names the regime; the ``nb_*``,
``star_*`` and ``asym_*`` columns describe what was added (NaN where absent).

Noise
-----
Every scene gets Gaussian sky noise in each band at DECaLS depth: 5-sigma point-source depths
g = 24.7, r = 23.9, z = 23.0 (AB; the DECaLS DR9 nominal depths), each scattered by 0.2 mag per
scene, turned into a per-pixel sigma with the Gaussian noise-equivalent area
``4 pi (FWHM / 2.355)^2`` of the scene's PSF on native 0.262" pixels, then scaled to the cutout
pixel by the pixel-area ratio (the rule of :func:`~pipeline.simulate.galaxies.sample_galaxies`).
The truth's ``sky_noise`` is the r-band sigma; ``sky_noise_g``/``sky_noise_z`` the others.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from pipeline.conventions import fits_to_display, pa_to_theta, wrap_360
from pipeline.errors import BadInputError
from pipeline.simulate.galaxies import (
    _MOFFAT_BETA,
    BANDS,
    GZ_SIZE,
    NATIVE_PIXSCALE,
    GalaxyTruth,
    bands_to_rgb,
    render_bands,
    sample_galaxies,
)

__all__ = ["REGIMES", "DECALS_DEPTH_5SIGMA", "Extra", "Scene", "parse_regimes", "sample_scenes",
           "decals_sky_sigma", "render_scene_bands", "render_scene_rgb"]

#: Regime names, in table order.
REGIMES: tuple[str, ...] = ("clean", "neighbour", "star", "faint", "lopsided")
#: DECaLS 5-sigma point-source depths, AB mag, per band of :data:`~pipeline.simulate.galaxies.BANDS`.
DECALS_DEPTH_5SIGMA: dict[str, float] = {"g": 24.7, "r": 23.9, "z": 23.0}
#: Scatter of the depth from scene to scene, mag (1 sigma).
_DEPTH_SCATTER_MAG: float = 0.2
#: Mean r-band surface brightness inside the half-light radius of ``faint`` targets, mag / arcsec^2.
FAINT_MU50: tuple[float, float] = (24.0, 25.5)
#: Fraction of the cutout inside the store's default centre crop (256 of 424 pixels).
_CROP_FRACTION: float = 256 / 424
#: Added objects keep their centre this far (pixels of a 424-pixel frame) inside that crop.
_CROP_MARGIN_PIX: float = 12.0


@dataclass(frozen=True)
class Extra:
    """One added light source, display frame of the cutout (0-based pixels, y down).

    kind: ``"galaxy"`` (then ``galaxy`` holds it), ``"star"`` (the PSF), ``"knot"`` (a
    Gaussian of half-light radius ``hlr_pix`` before the PSF) or ``"m1"`` (a copy of the
    target's disk, sheared like it).  ``flux``: nanomaggies per band, ordered as ``BANDS``.
    """

    kind: str
    x_pix: float
    y_pix: float
    flux: tuple[float, float, float]
    hlr_pix: float = 0.0
    galaxy: GalaxyTruth | None = None


@dataclass(frozen=True)
class Scene:
    """A target galaxy, what its regime adds, and the per-band sky noise (nanomaggies per pixel)."""

    regime: str
    target: GalaxyTruth
    extras: tuple[Extra, ...]
    sky_sigma: tuple[float, float, float]
    theta_dir_deg: float = math.nan  #: direction of the asymmetry, [0, 360); NaN where none

    @property
    def size(self) -> int:
        return self.target.size

    def record(self) -> dict[str, float | str]:
        """Flat truth row: the target's :meth:`GalaxyTruth.record`, the regime and what was added."""
        t = self.target
        rec: dict[str, float | str] = dict(t.record())
        rec["regime"] = self.regime
        rec["theta_dir_deg"] = self.theta_dir_deg
        rec["sky_noise_g"], rec["sky_noise_z"] = self.sky_sigma[0], self.sky_sigma[2]
        nan = math.nan
        nb = next((e for e in self.extras if e.kind == "galaxy"), None)
        star = next((e for e in self.extras if e.kind == "star"), None)
        asym = next((e for e in self.extras if e.kind in ("knot", "m1")), None)
        for prefix, e in (("nb", nb), ("star", star), ("asym", asym)):
            rec[f"{prefix}_x_pix"] = e.x_pix if e else nan
            rec[f"{prefix}_y_pix"] = e.y_pix if e else nan
            rec[f"{prefix}_sep_pix"] = math.hypot(e.x_pix - t.x_pix, e.y_pix - t.y_pix) if e else nan
            rec[f"{prefix}_flux_ratio"] = e.flux[1] / t.flux_r if e else nan  # r band, added / target
        rec["nb_hlr_pix"] = nb.galaxy.hlr_pix if nb else nan
        rec["nb_pa_deg"] = nb.galaxy.pa_deg if nb else nan
        rec["nb_axis_ratio"] = nb.galaxy.axis_ratio if nb else nan
        rec["asym_kind"] = asym.kind if asym else ""
        return rec


def parse_regimes(spec: str | Mapping[str, float]) -> dict[str, float]:
    """Regime fractions from a name (``"star"``), ``"mix"`` (every regime alike) or ``"clean:0.5,star:0.5"``.

    Fractions are normalised to sum to 1.  Raises :class:`BadInputError` on an unknown name
    or a bad fraction.
    """
    if isinstance(spec, Mapping):
        parts = dict(spec)
    elif spec == "mix":
        parts = {r: 1.0 for r in REGIMES}
    else:
        parts = {}
        for item in str(spec).split(","):
            m = re.fullmatch(r"\s*([a-z]+)\s*(?::\s*([0-9.eE+-]+))?\s*", item)
            if m is None:
                raise BadInputError(f"regime {item!r}: expected NAME or NAME:FRACTION (names: {', '.join(REGIMES)}, mix)")
            try:
                parts[m.group(1)] = float(m.group(2)) if m.group(2) else 1.0
            except ValueError:
                raise BadInputError(f"regime {item!r}: fraction is not a number") from None
    bad = sorted(set(parts) - set(REGIMES))
    if bad:
        raise BadInputError(f"unknown regime {bad[0]!r} (known: {', '.join(REGIMES)}, mix)")
    total = sum(parts.values())
    if any(not math.isfinite(v) or v < 0 for v in parts.values()) or total <= 0:
        raise BadInputError(f"regime fractions must be non-negative with a positive sum, got {parts}")
    return {r: parts[r] / total for r in REGIMES if parts.get(r, 0.0) > 0}


def decals_sky_sigma(pixscale_arcsec: float, psf_fwhm_arcsec: float,
                     depth_offset_mag: float = 0.0) -> tuple[float, float, float]:
    """Per-pixel sky sigma (nanomaggies, bands ``BANDS``) of a cutout pixel at DECaLS depth.

    ``depth_offset_mag`` is added to every band's 5-sigma depth (positive: deeper).
    """
    nea_native = 4.0 * math.pi * (psf_fwhm_arcsec / 2.3548) ** 2 / NATIVE_PIXSCALE ** 2  # pixels
    area = (pixscale_arcsec / NATIVE_PIXSCALE) ** 2
    out = []
    for band in BANDS:
        flux_5sigma = 10 ** (-0.4 * (DECALS_DEPTH_5SIGMA[band] + depth_offset_mag - 22.5))
        out.append(flux_5sigma / 5.0 / math.sqrt(nea_native) * area)
    return out[0], out[1], out[2]


def _colour_fluxes(flux_r: float, g_r: float, r_z: float) -> tuple[float, float, float]:
    return flux_r * 10 ** (-0.4 * g_r), flux_r, flux_r * 10 ** (0.4 * r_z)


def _place(rng: np.random.Generator, t: GalaxyTruth, sep_hlr: tuple[float, float]) -> tuple[float, float]:
    """A position 1 separation (in target half-light radii) from the target, inside the store crop."""
    centre = (t.size - 1) / 2.0
    half = _CROP_FRACTION * t.size / 2.0 - _CROP_MARGIN_PIX * t.size / GZ_SIZE
    sep = rng.uniform(*sep_hlr) * t.hlr_pix
    ang = rng.uniform(0.0, 2.0 * math.pi)
    dx, dy = math.cos(ang), -math.sin(ang)
    # shrink the separation until the point is inside the crop (the target itself is inside it)
    for bound_pos, d in ((t.x_pix, dx), (t.y_pix, dy)):
        if d > 1e-9:
            sep = min(sep, (centre + half - bound_pos) / d)
        elif d < -1e-9:
            sep = min(sep, (centre - half - bound_pos) / d)
    return t.x_pix + sep * dx, t.y_pix + sep * dy


def _scene(rng: np.random.Generator, regime: str, t: GalaxyTruth, spare: GalaxyTruth) -> Scene:
    """Build one scene of ``regime`` around target ``t``; ``spare`` supplies a neighbour's shape."""
    sigma = decals_sky_sigma(t.pixscale_arcsec, t.psf_fwhm_arcsec, rng.normal(0.0, _DEPTH_SCATTER_MAG))
    if regime == "faint":
        mu50 = rng.uniform(*FAINT_MU50)
        t = replace(t, flux_r=float(2.0 * math.pi * t.hlr_arcsec ** 2 * 10 ** (-0.4 * (mu50 - 22.5))))
    t = replace(t, sky_noise=float(sigma[1]))
    extras: tuple[Extra, ...] = ()
    theta_dir = math.nan
    if regime == "neighbour":
        x, y = _place(rng, t, (1.5, 4.0))
        k = rng.uniform(0.4, 1.0) * t.hlr_pix / spare.hlr_pix
        flux_r = t.flux_r * math.exp(rng.uniform(math.log(0.3), math.log(2.0)))
        nb = replace(spare, x_pix=x, y_pix=y, flux_r=flux_r, bulge_hlr_pix=spare.bulge_hlr_pix * k,
                     disk_hlr_pix=spare.disk_hlr_pix * k, hlr_pix=spare.hlr_pix * k,
                     psf_fwhm_arcsec=t.psf_fwhm_arcsec, pixscale_arcsec=t.pixscale_arcsec, size=t.size)
        g, r, z = (float(v) for v in sum(nb.band_fluxes()))
        extras = (Extra("galaxy", x, y, (g, r, z), nb.hlr_pix, nb),)
    elif regime == "star":
        x, y = _place(rng, t, (1.5, 4.0))
        g_r = rng.uniform(0.4, 1.4)
        flux_r = t.flux_r * math.exp(rng.uniform(math.log(0.3), math.log(3.0)))
        extras = (Extra("star", x, y, _colour_fluxes(flux_r, g_r, 0.55 * g_r + rng.normal(0.0, 0.05))),)
    elif regime == "lopsided":
        side = 1.0 if rng.uniform() < 0.5 else -1.0
        theta_axis = float(pa_to_theta(t.pa_deg))
        theta_dir = float(wrap_360(theta_axis + (0.0 if side > 0 else 180.0)))
        major = t.disk_hlr_pix / math.sqrt(t.axis_ratio)  # disk half-light semi-major axis, pixels
        ux, uy = math.cos(math.radians(theta_dir)), -math.sin(math.radians(theta_dir))  # display frame, y down
        _, disk = t.band_fluxes()
        if rng.uniform() < 0.5:
            d = rng.uniform(0.6, 1.5) * major
            frac = rng.uniform(0.08, 0.25)
            flux = _colour_fluxes(frac * t.flux_r, rng.uniform(0.1, 0.4), rng.uniform(0.0, 0.3))
            extras = (Extra("knot", t.x_pix + d * ux, t.y_pix + d * uy, flux,
                            hlr_pix=rng.uniform(0.08, 0.2) * t.disk_hlr_pix),)
        else:
            d = rng.uniform(0.3, 0.7) * major
            frac = rng.uniform(0.1, 0.25) * t.flux_r / disk[1]  # of the target's r flux, disk colours
            flux = (float(frac * disk[0]), float(frac * disk[1]), float(frac * disk[2]))
            extras = (Extra("m1", t.x_pix + d * ux, t.y_pix + d * uy, flux, hlr_pix=t.disk_hlr_pix),)
    return Scene(regime=regime, target=t, extras=extras, sky_sigma=sigma, theta_dir_deg=theta_dir)


def sample_scenes(rng: np.random.Generator, n: int, regimes: str | Mapping[str, float] = "mix", *,
                  size: int = GZ_SIZE) -> list[Scene]:
    """Draw ``n`` scenes; each regime gets ``round(fraction x n)`` of them (the rest to the largest), shuffled.

    Targets come from :func:`~pipeline.simulate.galaxies.sample_galaxies` (Galaxy Zoo DECaLS-like);
    ``regimes`` as :func:`parse_regimes`.
    """
    fractions = parse_regimes(regimes)
    names = list(fractions)
    counts = [int(round(fractions[r] * n)) for r in names]
    counts[int(np.argmax(counts))] += n - sum(counts)
    labels = np.repeat(np.array(names, dtype=object), np.maximum(counts, 0))[:n]
    labels = labels[rng.permutation(n)]
    targets = sample_galaxies(rng, n, size=size)
    spares = sample_galaxies(rng, n, size=size)
    return [_scene(rng, str(r), t, s) for r, t, s in zip(labels, targets, spares)]


# --- rendering ---

def _draw_at(profile, x_pix: float, y_pix: float, size: int) -> NDArray[np.float32]:
    """Draw a GalSim profile centred at display-frame (x_pix, y_pix) on a size x size image (H, W).

    The frame convention of :func:`pipeline.simulate.galaxies._draw_components`: bounds from
    ``lo = -(size // 2)``, GalSim rows y up, flipped to display order.
    """
    import galsim  # imported here: only rendering needs it

    lo = -(size // 2)
    image = galsim.ImageF(galsim.BoundsI(lo, lo + size - 1, lo, lo + size - 1), scale=1.0)
    profile.shift(galsim.PositionD(x_pix + lo, (size - 1 + lo) - y_pix)).drawImage(image)  # PSF x pixel
    return fits_to_display(image.array)


def _render_extra(e: Extra, scene: Scene) -> NDArray[np.float32]:
    """(3, H, W) noise-free image of one added source, nanomaggies per pixel."""
    if e.kind == "galaxy":
        assert e.galaxy is not None
        return render_bands(e.galaxy, None)
    import galsim

    t = scene.target
    psf = galsim.Moffat(beta=_MOFFAT_BETA, fwhm=t.psf_fwhm_arcsec / t.pixscale_arcsec)
    if e.kind == "star":
        profile = psf
    elif e.kind == "knot":
        profile = galsim.Convolve(galsim.Gaussian(half_light_radius=e.hlr_pix), psf)
    elif e.kind == "m1":
        shear = galsim.Shear(q=t.axis_ratio, beta=float(pa_to_theta(t.pa_deg)) * galsim.degrees)
        profile = galsim.Convolve(galsim.Exponential(half_light_radius=e.hlr_pix).shear(shear), psf)
    else:
        raise ValueError(f"unknown extra kind {e.kind!r}")
    unit = _draw_at(profile, e.x_pix, e.y_pix, scene.size)
    return np.asarray(e.flux, dtype=np.float32)[:, None, None] * unit[None]


def render_scene_bands(scene: Scene, rng: np.random.Generator | None = None) -> NDArray[np.float32]:
    """(3, H, W) float32 g, r, z of a scene in nanomaggies per pixel, display frame; ``rng=None``: no noise."""
    cube = render_bands(scene.target, None)
    for e in scene.extras:
        cube += _render_extra(e, scene)
    if rng is not None:
        sigma = np.asarray(scene.sky_sigma, dtype=np.float32)
        cube += sigma[:, None, None] * rng.standard_normal(cube.shape, dtype=np.float32)
    return cube


def render_scene_rgb(scene: Scene, rng: np.random.Generator | None = None) -> NDArray[np.uint8]:
    """(H, W, 3) uint8 RGB cutout of a scene, display frame, DECaLS-like stretch."""
    return bands_to_rgb(render_scene_bands(scene, rng))
