"""Simulated survey galaxies with known truth, rendered with GalSim and stretched like DECaLS JPEGs.

A galaxy is a de Vaucouleurs-like Sersic bulge plus an exponential disk, both sheared
to one intrinsic axis ratio and turned to one position angle, convolved with a Moffat
PSF, in three bands (g, r, z) whose bulge and disk colours differ, with Gaussian sky
noise, then mapped to 8-bit RGB with the Lupton-like asinh stretch of the Legacy
Survey viewer (``dr2_rgb`` in legacypipe: z -> red, r -> green, g -> blue, a small
positive offset that leaves a sky floor of about 30 of 255).

Frames (see :mod:`pipeline.conventions`)
----------------------------------------
Every array returned here is in the *display frame*: row 0 is the top row (north),
east is left, ``x`` runs along columns to the right, ``y`` along rows downward, pixel
centres at integers, 0-based.  GalSim draws with row 0 at the *bottom* (y up), and
measures its shear angle ``beta`` counter-clockwise from +x in that y-up frame; once
rows are flipped to display order the picture a person sees is the same one, so a
galaxy drawn with ``beta`` has ``theta_deg = beta`` (CCW from +x as displayed) and
``pa_deg = theta_to_pa(beta)``.  GalSim places the profile at ``true_center + offset``;
for an ``n``-pixel axis the true centre is at 0-based array index ``(n - 1) / 2``, so
the display-frame centroid is ``x_pix = (n - 1) / 2 + dx`` and, after the row flip
``r -> n - 1 - r``, ``y_pix = (n - 1) / 2 - dy``.

Cutout scale
------------
Galaxy Zoo DECaLS cutouts scale with the galaxy.  Following the pixel-scale rule of the
Galaxy Zoo DECaLS download code (zooniverse/decals), the scale is
``max(min(0.04 * petro_th50, 0.02 * petro_th90), 0.1)`` arcsec per pixel, so most
galaxies have a Petrosian half-light radius of about 25 pixels in the 424-pixel frame.
``petro_th50``/``petro_th90`` are computed from the intrinsic (pre-PSF, circularised)
profile with the SDSS Petrosian ratio 0.2 and the flux inside two Petrosian radii.

Speed: the bulge Sersic index is rounded to steps of 0.5 so that GalSim reuses its
cached Hankel tables (about 3 ms per profile when the index repeats, 50 ms when new).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import special

from pipeline.conventions import fits_to_display, pa_to_theta

__all__ = [
    "BANDS",
    "GZ_SIZE",
    "GalaxyTruth",
    "sample_galaxies",
    "render_bands",
    "bands_to_rgb",
    "render_rgb",
    "petrosian_radii",
    "gz_pixscale",
]

#: Band order of every (3, H, W) cube here.
BANDS: tuple[str, str, str] = ("g", "r", "z")
#: Galaxy Zoo DECaLS cutout size in pixels.
GZ_SIZE: int = 424
#: DECam native pixel scale, arcsec per pixel.
NATIVE_PIXSCALE: float = 0.262
#: Legacy Survey ``dr2_rgb`` stretch: band -> (RGB plane, scale); offset m and softening Q.
_RGB_SCALES: dict[str, tuple[int, float]] = {"g": (2, 6.0), "r": (1, 3.4), "z": (0, 2.2)}
_RGB_OFFSET: float = 0.03
_RGB_Q: float = 20.0
#: Sky noise of g and z relative to r (nanomaggies per pixel), roughly DECaLS depths.
_NOISE_RATIO: dict[str, float] = {"g": 0.7, "r": 1.0, "z": 2.0}
#: The bulge Sersic profile is cut at this many (untruncated) half-light radii: without a
#: cut, the n = 4 wings make GalSim's FFT 4096 pixels wide for large bulges (1 s a galaxy).
BULGE_TRUNC_HLR: float = 8.0
#: Moffat PSF slope.
_MOFFAT_BETA: float = 3.5
#: Offset of the centroid from the frame centre, pixels of a 424-pixel frame (1 sigma, cap).
_OFFSET_SIGMA_PIX: float = 5.0
_OFFSET_MAX_PIX: float = 15.0


@dataclass(frozen=True)
class GalaxyTruth:
    """What one simulated galaxy is; enough to render it (plus a noise seed).

    Positions are in the display frame of the ``size``-pixel cutout (0-based, centres at
    integers, x right, y down); angles in degrees; fluxes in nanomaggies (22.5 zero point).
    """

    x_pix: float  #: centroid column, pixels
    y_pix: float  #: centroid row, pixels (down)
    pa_deg: float  #: major axis, degrees East of North, [0, 180)
    axis_ratio: float  #: intrinsic (pre-PSF) minor/major axis ratio of bulge and disk
    bulge_sersic_n: float  #: bulge Sersic index (steps of 0.5)
    bulge_hlr_pix: float  #: bulge half-light radius (geometric mean of the axes), pixels
    disk_hlr_pix: float  #: disk half-light radius (geometric mean of the axes), pixels
    bulge_fraction: float  #: bulge share of the r-band flux, [0, 1]
    flux_r: float  #: total r-band flux, nanomaggies
    bulge_g_r: float  #: bulge g - r colour, mag
    bulge_r_z: float  #: bulge r - z colour, mag
    disk_g_r: float  #: disk g - r colour, mag
    disk_r_z: float  #: disk r - z colour, mag
    psf_fwhm_arcsec: float  #: Moffat PSF FWHM, arcsec (the same in every band)
    pixscale_arcsec: float  #: cutout pixel scale, arcsec per pixel
    sky_noise: float  #: r-band sky noise, nanomaggies per pixel (1 sigma); g, z scaled
    hlr_pix: float  #: half-light radius of bulge + disk (circularised, pre-PSF), pixels
    petro_th50: float  #: Petrosian 50% radius of the intrinsic profile, arcsec
    petro_th90: float  #: Petrosian 90% radius of the intrinsic profile, arcsec
    size: int = GZ_SIZE  #: cutout size, pixels

    @property
    def theta_deg(self) -> float:
        """Major-axis orientation, degrees CCW from +x as displayed, in [0, 180)."""
        return float(pa_to_theta(self.pa_deg))

    @property
    def hlr_arcsec(self) -> float:
        """Half-light radius of bulge + disk, arcsec."""
        return self.hlr_pix * self.pixscale_arcsec

    def band_fluxes(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(bulge, disk) fluxes in nanomaggies, each ordered as :data:`BANDS`."""
        fb, fd = self.flux_r * self.bulge_fraction, self.flux_r * (1.0 - self.bulge_fraction)

        def bands(f: float, g_r: float, r_z: float) -> NDArray[np.float64]:
            return np.array([f * 10 ** (-0.4 * g_r), f, f * 10 ** (0.4 * r_z)])

        return bands(fb, self.bulge_g_r, self.bulge_r_z), bands(fd, self.disk_g_r, self.disk_r_z)

    def record(self) -> dict[str, float]:
        """Flat dict for a truth table: every field plus derived theta, sizes, magnitudes, colours, S/N.

        ``snr`` is the r-band flux over the sky noise summed in a circle of radius 2 hlr:
        a rough, PSF-free signal-to-noise ratio.
        """
        rec: dict[str, float] = asdict(self)
        bulge, disk = self.band_fluxes()
        g, r, z = bulge + disk
        rec["theta_deg"] = self.theta_deg
        rec["hlr_arcsec"] = self.hlr_arcsec
        rec["mag_r"] = 22.5 - 2.5 * math.log10(r)
        rec["g_r"] = -2.5 * math.log10(g / r)
        rec["r_z"] = -2.5 * math.log10(r / z)
        rec["snr"] = r / (self.sky_noise * math.sqrt(math.pi) * 2.0 * self.hlr_pix)
        return rec


# --- profiles: enclosed light and Petrosian radii of the circularised intrinsic profile ---

def _sersic_b(n: NDArray[np.float64]) -> NDArray[np.float64]:
    return special.gammaincinv(2.0 * n, 0.5)


def _enclosed_and_sb(r: NDArray[np.float64], n: NDArray[np.float64], re: NDArray[np.float64]
                     ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Enclosed flux fraction L(<r) and surface brightness 2 pi r I(r) = dL/dr of a unit Sersic."""
    b = _sersic_b(n)
    x = b * (r / re) ** (1.0 / n)
    enclosed = special.gammainc(2.0 * n, x)
    # dL/dr = x^(2n-1) e^-x / Gamma(2n) * dx/dr, dx/dr = x / (n r)
    dldr = np.exp((2.0 * n - 1.0) * np.log(x) - x - special.gammaln(2.0 * n)) * x / (n * r)
    return enclosed, dldr


def petrosian_radii(bulge_n: NDArray[np.float64], bulge_hlr: NDArray[np.float64],
                    disk_hlr: NDArray[np.float64], bulge_fraction: NDArray[np.float64]
                    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Half-light, Petrosian 50% and Petrosian 90% radii of bulge + disk (circularised, pre-PSF).

    All arrays (N,) in one length unit; returns (hlr, petro_th50, petro_th90) in that unit.
    Petrosian ratio 0.2 (SDSS), Petrosian flux inside two Petrosian radii.
    """
    bulge_n, bulge_hlr, disk_hlr, bf = (np.asarray(a, dtype=np.float64)[:, None]
                                        for a in (bulge_n, bulge_hlr, disk_hlr, bulge_fraction))
    rmax = 20.0 * np.maximum(bulge_hlr, disk_hlr)
    r = rmax * np.logspace(-4, 0, 2000)[None, :]  # (N, R)
    lb, db = _enclosed_and_sb(r, bulge_n, bulge_hlr)
    ld, dd = _enclosed_and_sb(r, np.ones_like(bulge_n), disk_hlr)
    light = bf * lb + (1 - bf) * ld
    sb = (bf * db + (1 - bf) * dd) / (2 * np.pi * r)  # I(r)
    mean_sb = light / (np.pi * r ** 2)
    eta = sb / mean_sb  # decreases outward
    out_hlr, out_p50, out_p90 = (np.empty(len(r)) for _ in range(3))
    for i in range(len(r)):
        out_hlr[i] = np.interp(0.5, light[i], r[i])
        rp = np.interp(-0.2, -eta[i], r[i])
        flux_p = np.interp(2.0 * rp, r[i], light[i])
        out_p50[i] = np.interp(0.5 * flux_p, light[i], r[i])
        out_p90[i] = np.interp(0.9 * flux_p, light[i], r[i])
    return out_hlr, out_p50, out_p90


def gz_pixscale(petro_th50: NDArray[np.float64], petro_th90: NDArray[np.float64]) -> NDArray[np.float64]:
    """Galaxy Zoo DECaLS cutout pixel scale, arcsec per pixel, from Petrosian radii in arcsec."""
    return np.maximum(np.minimum(0.04 * np.asarray(petro_th50), 0.02 * np.asarray(petro_th90)), 0.1)


# --- sampling ---

def sample_galaxies(rng: np.random.Generator, n: int, *, size: int = GZ_SIZE,
                    sky_noise: float | None = None) -> list[GalaxyTruth]:
    """Draw ``n`` galaxies like the Galaxy Zoo DECaLS sample (bright, resolved, r < 17.8).

    Half-light radii are log-normal around 4 arcsec; PA uniform; intrinsic axis ratio
    uniform in [0.15, 1]; bulge fraction skewed towards disks; centroid offset from the
    frame centre by a few pixels (Gaussian, 5 px sigma, at most 15 px in a 424-pixel
    frame, scaled with ``size``).  ``sky_noise`` (r band, nanomaggies per pixel) fixes the
    noise of every galaxy; ``None`` draws it per galaxy: log-uniform in [0.003, 0.006] per
    native 0.262" pixel, times the pixel-area ratio of the resampled cutout.
    """
    hlr_arcsec = np.exp(rng.normal(math.log(4.0), 0.35, n)).clip(1.5, 15.0)
    bulge_n = np.round(rng.uniform(2.0, 4.5, n) * 2.0) / 2.0
    bulge_fraction = rng.uniform(0.0, 1.0, n) ** 1.5
    # bulge hlr / disk hlr: small bulges in disks; bulge-dominated galaxies get a co-extensive
    # faint disk (an envelope), not a huge one that would only slow the FFT down.
    size_ratio = rng.uniform(0.2, 0.6, n)
    size_ratio += (1.0 - size_ratio) * bulge_fraction ** 2
    # The composite hlr is linear in the disk hlr at fixed size ratio: solve with a unit disk.
    hlr1, p50_1, p90_1 = petrosian_radii(bulge_n, size_ratio, np.ones(n), bulge_fraction)
    disk_hlr_arcsec = hlr_arcsec / hlr1
    petro_th50 = p50_1 * disk_hlr_arcsec
    petro_th90 = p90_1 * disk_hlr_arcsec
    pixscale = gz_pixscale(petro_th50, petro_th90)
    pa = rng.uniform(0.0, 180.0, n)
    q = rng.uniform(0.15, 1.0, n)
    mu50 = rng.uniform(20.0, 22.5, n)  # mean r-band surface brightness inside hlr, mag / arcsec^2
    flux_r = 2.0 * np.pi * hlr_arcsec ** 2 * 10 ** (-0.4 * (mu50 - 22.5))
    psf_fwhm = rng.uniform(1.0, 1.6, n)
    colours = np.stack([rng.normal(0.80, 0.05, n), rng.normal(0.45, 0.05, n),  # bulge g-r, r-z
                        rng.normal(0.45, 0.10, n), rng.normal(0.30, 0.08, n)], axis=1)  # disk
    # DECaLS r-band sky noise is a few 0.001 nanomaggies per native 0.262" pixel; the cutout
    # service resamples to the cutout scale, which scales flux per pixel (and so the noise)
    # by the pixel-area ratio.
    native = np.exp(rng.uniform(math.log(0.003), math.log(0.006), n))
    noise = (np.full(n, float(sky_noise)) if sky_noise is not None
             else native * (pixscale / NATIVE_PIXSCALE) ** 2)
    scale = size / GZ_SIZE
    offset = rng.normal(0.0, _OFFSET_SIGMA_PIX * scale, (n, 2))
    rad = np.hypot(offset[:, 0], offset[:, 1])
    cap = _OFFSET_MAX_PIX * scale
    offset *= np.minimum(1.0, cap / np.maximum(rad, 1e-12))[:, None]
    centre = (size - 1) / 2.0
    out = []
    for i in range(n):
        out.append(GalaxyTruth(
            x_pix=float(centre + offset[i, 0]), y_pix=float(centre + offset[i, 1]),
            pa_deg=float(pa[i]), axis_ratio=float(q[i]), bulge_sersic_n=float(bulge_n[i]),
            bulge_hlr_pix=float(size_ratio[i] * disk_hlr_arcsec[i] / pixscale[i] * scale),
            disk_hlr_pix=float(disk_hlr_arcsec[i] / pixscale[i] * scale),
            bulge_fraction=float(bulge_fraction[i]), flux_r=float(flux_r[i]),
            bulge_g_r=float(colours[i, 0]), bulge_r_z=float(colours[i, 1]),
            disk_g_r=float(colours[i, 2]), disk_r_z=float(colours[i, 3]),
            psf_fwhm_arcsec=float(psf_fwhm[i]), pixscale_arcsec=float(pixscale[i] / scale),
            sky_noise=float(noise[i]), hlr_pix=float(hlr_arcsec[i] / pixscale[i] * scale),
            petro_th50=float(petro_th50[i]), petro_th90=float(petro_th90[i]), size=int(size)))
    return out


# --- rendering ---

def _draw_components(truth: GalaxyTruth) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Unit-flux bulge and disk images (H, W), PSF-convolved, pixel-integrated, display frame."""
    import galsim  # imported here: only rendering needs it

    size = truth.size
    psf = galsim.Moffat(beta=_MOFFAT_BETA, fwhm=truth.psf_fwhm_arcsec / truth.pixscale_arcsec)
    # GalSim's beta is CCW from +x with y up, which is theta as displayed after the row flip.
    shear = galsim.Shear(q=truth.axis_ratio, beta=float(pa_to_theta(truth.pa_deg)) * galsim.degrees)
    # Image bounds run from lo = -(size // 2): GalSim position (X, Y) is array column X - lo and
    # y-up row Y - lo, i.e. display row size - 1 - (Y - lo).  Put the profile centre there.
    lo = -(size // 2)
    offset = galsim.PositionD(truth.x_pix + lo, (size - 1 + lo) - truth.y_pix)
    # Unit-size profiles, then dilated: GalSim caches the Sersic tables per (n, trunc / hlr).
    bulge = galsim.Sersic(n=truth.bulge_sersic_n, half_light_radius=1.0, trunc=BULGE_TRUNC_HLR,
                          flux_untruncated=True).dilate(truth.bulge_hlr_pix).shear(shear).shift(offset)
    disk = galsim.Exponential(half_light_radius=truth.disk_hlr_pix).shear(shear).shift(offset)
    # Bounds centred on 0 keep GalSim's FFT at 512 rather than 1024 for a 424-pixel image.
    image = galsim.ImageF(galsim.BoundsI(lo, lo + size - 1, lo, lo + size - 1), scale=1.0)
    # GalSim's documented split of drawFFT: one k-space grid big enough for both components,
    # the PSF (times the pixel response, as drawImage's default method does) drawn once.
    total = galsim.Convolve(bulge + disk, psf, galsim.Pixel(1.0))
    kgrid, wrap_size = total.drawFFT_makeKImage(image)
    # ``_drawKImage`` is what drawFFT itself calls on that grid (the public drawKImage re-centres
    # the bounds); tests compare the result with plain drawImage.
    kpsf = kgrid.copy()
    galsim.Convolve(psf, galsim.Pixel(1.0))._drawKImage(kpsf)
    out = []
    for comp in (bulge, disk):
        kimage = kgrid.copy()
        comp._drawKImage(kimage)
        kimage *= kpsf
        total.drawFFT_finish(image, kimage, wrap_size, add_to_image=False)
        out.append(fits_to_display(image.array))  # GalSim rows are y up, like FITS
    return out[0], out[1]


def render_bands(truth: GalaxyTruth, rng: np.random.Generator | None = None) -> NDArray[np.float32]:
    """(3, H, W) float32 g, r, z images in nanomaggies per pixel, display frame, with sky noise.

    ``rng=None`` renders without noise.
    """
    bulge_img, disk_img = _draw_components(truth)
    bulge, disk = truth.band_fluxes()
    cube = (bulge.astype(np.float32)[:, None, None] * bulge_img[None]
            + disk.astype(np.float32)[:, None, None] * disk_img[None])  # (3, H, W)
    if rng is not None:
        sigma = np.array([_NOISE_RATIO[b] for b in BANDS], dtype=np.float32) * np.float32(truth.sky_noise)
        cube += sigma[:, None, None] * rng.standard_normal(cube.shape, dtype=np.float32)
    return cube


def bands_to_rgb(cube: NDArray[np.floating]) -> NDArray[np.uint8]:
    """(3, H, W) g, r, z nanomaggies -> (H, W, 3) uint8 RGB with the Legacy Survey asinh stretch.

    Each band is scaled and offset (``img * scale + 0.03``, clipped at 0), the mean of
    the three sets a common ``asinh(Q I) / sqrt(Q)`` stretch (colours are kept), and the
    result is clipped to [0, 1].  The offset leaves a positive sky floor.
    """
    h, w = cube.shape[1:]
    planes = np.empty((3, h, w), dtype=np.float32)
    for band, img in zip(BANDS, cube):
        plane, scale = _RGB_SCALES[band]
        planes[plane] = np.maximum(img * np.float32(scale) + np.float32(_RGB_OFFSET), 0.0)
    mean = planes.mean(axis=0)
    gain = np.arcsinh(np.float32(_RGB_Q) * mean) / np.float32(math.sqrt(_RGB_Q))
    gain /= np.where(mean > 0, mean, np.float32(1e-6))
    planes *= gain[None]
    rgb = np.clip(planes * np.float32(255.0) + np.float32(0.5), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb.transpose(1, 2, 0))  # (H, W, 3)


def render_rgb(truth: GalaxyTruth, rng: np.random.Generator | None = None) -> NDArray[np.uint8]:
    """(H, W, 3) uint8 RGB cutout of one galaxy, display frame (north up, east left)."""
    return bands_to_rgb(render_bands(truth, rng))
