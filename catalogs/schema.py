"""The catalogue schema: one table in code, from which the writer and the docs are made.

Every column has a name, a numpy dtype, a unit (an astropy unit string, or ``None``
for dimensionless numbers), an IVOA UCD1+ word and a description that becomes the
FITS ``TCOMMn`` keyword (so at most 68 characters).  The latent columns ``z_0`` ...
``z_{d-1}`` are generated for the latent size ``d`` given at build time.

Pixel and angle conventions are those of ``../shared/CONTRACT.md`` and
:mod:`pipeline.conventions`: ``x_pix``/``y_pix`` are 0-based pixels of the original
cutout, x right, y down; ``theta_deg`` is counter-clockwise from +x as displayed in
[0, 360); ``pa_deg`` is East of North in [0, 180).

Nulls: a float column has no FITS null value, so an unknown value is stored as NaN
(``pa_deg`` where the orientation is unknown, exactly the rows with flag bit 1, so
``isnull(pa_deg)`` and ``(flags & 1) != 0`` select the same rows; the model's errors
where inference ran without an error ensemble).  ``id`` and ``flags`` are never null.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ColumnSpec",
    "FLAG_ORIENTATION_ILL_DEFINED",
    "FLAG_CENTROID_NEAR_EDGE",
    "FLAG_RECON_OUTLIER",
    "FLAG_NO_DIRECTION",
    "FLAG_BITS",
    "LATENT_PREFIX",
    "catalog_schema",
    "column_names",
    "column_spec",
    "latent_names",
    "schema_markdown",
    "MAX_ID_LENGTH",
    "id_problem",
    "first_bad_id",
]

#: bit 1 of ``flags``: orientation ill-defined (near-round, or a 1-sigma PA error above 20 deg).
FLAG_ORIENTATION_ILL_DEFINED: int = 1
#: bit 2 of ``flags``: the centroid is near the edge of the cutout.
FLAG_CENTROID_NEAR_EDGE: int = 2
#: bit 4 of ``flags``: the same-view reconstruction error is an outlier.
FLAG_RECON_OUTLIER: int = 4
#: bit 8 of ``flags``: the galaxy shows no direction; ``theta_deg`` is its axis, in [0, 180).
FLAG_NO_DIRECTION: int = 8
#: flag value -> meaning, in bit order (written to the FITS header as comments).
FLAG_BITS: dict[int, str] = {
    FLAG_ORIENTATION_ILL_DEFINED: "orientation ill-defined (near-round, or a PA error above 20 deg)",
    FLAG_CENTROID_NEAR_EDGE: "centroid near the edge of the cutout",
    FLAG_RECON_OUTLIER: "reconstruction outlier",
    FLAG_NO_DIRECTION: "no direction (theta_deg is the axis, in [0,180))",
}

#: latent columns are ``z_0`` ... ``z_{d-1}``.
LATENT_PREFIX = "z_"
_LATENT_RE = re.compile(r"z_(0|[1-9][0-9]*)")

#: largest latent size accepted (FITS allows 999 columns in a table).
MAX_LATENT_DIM = 900

#: longest object id accepted, in characters (the FITS column is as wide as the longest id).
MAX_ID_LENGTH = 256


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be an object id, or None when it can.

    The id policy, what both catalogue formats hold and read back unchanged: 1 to
    :data:`MAX_ID_LENGTH` printable ASCII characters (space to ``~``; FITS character
    columns hold ASCII only, and a control character would break every line-based
    tool), with no space at either end (FITS drops trailing spaces on reading).
    """
    if not value:
        return "empty id"
    if len(value) > MAX_ID_LENGTH:
        return f"id longer than {MAX_ID_LENGTH} characters"
    bad = next((c for c in value if not " " <= c <= "~"), None)
    if bad is not None:
        return f"id holds {bad!r}, not printable ASCII"
    if value[0] == " " or value[-1] == " ":
        return "id begins or ends with a space"
    return None


def first_bad_id(ids: np.ndarray) -> tuple[int, str] | None:
    """``(index, reason)`` of the first id that breaks :func:`id_problem`, or None (vectorised check first)."""
    arr = np.asarray(ids)
    if arr.size == 0:
        return None
    if arr.dtype.kind not in "U":
        arr = np.asarray(arr.tolist(), dtype=np.str_)
    codes = np.ascontiguousarray(arr).view(np.uint32).reshape(len(arr), -1)  # NUL-padded
    length = np.char.str_len(arr)
    bad = ((codes != 0) & ((codes < 32) | (codes > 126))).any(axis=1) | (length == 0) | (length > MAX_ID_LENGTH)
    bad |= np.char.startswith(arr, " ") | np.char.endswith(arr, " ")
    for i in np.flatnonzero(bad):
        reason = id_problem(str(arr[i]))
        if reason is not None:
            return int(i), reason
    return None


@dataclass(frozen=True)
class ColumnSpec:
    """One catalogue column.

    ``dtype`` is the in-memory numpy dtype (``id`` is a unicode string; the FITS
    writer stores it as ASCII of the longest id's width).  ``tdisp`` is the FITS
    display format (``TDISPn``), also used by ``galaxy-codae query`` for text output.
    """

    name: str
    dtype: np.dtype
    unit: str | None
    ucd: str
    description: str
    tdisp: str

    @property
    def is_string(self) -> bool:
        return self.dtype.kind in "US"


def _col(name: str, dtype: str, unit: str | None, ucd: str, description: str, tdisp: str) -> ColumnSpec:
    return ColumnSpec(name, np.dtype(dtype), unit, ucd, description, tdisp)


# fmt: off
#: the columns before the latents, in catalogue order.
_HEAD: tuple[ColumnSpec, ...] = (
    _col("id", "U", None, "meta.id;meta.main",
         "object id from the input catalogue (iauname for Galaxy Zoo)", "A"),
    _col("ra", "f8", "deg", "pos.eq.ra;meta.main",
         "right ascension (ICRS) from the input catalogue", "F11.6"),
    _col("dec", "f8", "deg", "pos.eq.dec;meta.main",
         "declination (ICRS) from the input catalogue", "F11.6"),
    _col("x_pix", "f4", "pix", "pos.cartesian.x;instr.pixel",
         "centroid x, original cutout pixels, 0-based, x right", "F9.3"),
    _col("y_pix", "f4", "pix", "pos.cartesian.y;instr.pixel",
         "centroid y, original cutout pixels, 0-based, y down", "F9.3"),
    _col("theta_deg", "f4", "deg", "pos.posAng;instr.pixel",
         "orientation [0,360), CCW from +x as displayed; [0,180) if flag bit 8", "F8.3"),
    _col("pa_deg", "f4", "deg", "pos.posAng;meta.main",
         "position angle [0,180), E of N; NaN where unknown (flags bit 1)", "F8.3"),
    _col("moment_pa_deg", "f4", "deg", "pos.posAng",
         "position angle from image moments in [0,180), E of N", "F8.3"),
    _col("moment_axis_ratio", "f4", None, "phys.size.axisRatio",
         "minor/major axis ratio from image moments", "F7.4"),
)
_TAIL: tuple[ColumnSpec, ...] = (
    _col("recon_mse", "f4", None, "stat.fit.residual",
         "mean squared error of the same-view reconstruction", "E11.4"),
    _col("pa_err_deg", "f4", "deg", "stat.error;pos.posAng",
         "1-sigma error of pa_deg: ensemble spread calibrated on simulations", "F7.3"),
    _col("x_err_pix", "f4", "pix", "stat.error;pos.cartesian.x;instr.pixel",
         "1-sigma error of x_pix: ensemble spread calibrated on simulations", "F8.3"),
    _col("y_err_pix", "f4", "pix", "stat.error;pos.cartesian.y;instr.pixel",
         "1-sigma error of y_pix: ensemble spread calibrated on simulations", "F8.3"),
    _col("moment_pa_err_deg", "f4", "deg", "stat.error;pos.posAng",
         "1-sigma error of moment_pa_deg, propagated from the sky noise", "F7.3"),
    _col("direction_snr", "f4", None, "stat.snr;pos.posAng",
         "fit gain of theta_deg over theta_deg+180 in noise units; <3: none", "F9.2"),
    _col("flags", "i2", None, "meta.code.qual",
         "bits: 1 PA ill-defined, 2 near edge, 4 recon outlier, 8 no direction", "I5"),
)
# fmt: on


def _latent(k: int) -> ColumnSpec:
    return _col(f"{LATENT_PREFIX}{k}", "f4", None, "src.morph.param", f"pose-invariant morphology latent {k}", "F10.5")


def _check_latent_dim(latent_dim: int) -> int:
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, (int, np.integer)):
        raise TypeError(f"latent_dim must be an integer, got {type(latent_dim).__name__}")
    if not 1 <= int(latent_dim) <= MAX_LATENT_DIM:
        raise ValueError(f"latent_dim must be in [1, {MAX_LATENT_DIM}], got {latent_dim}")
    return int(latent_dim)


def latent_names(latent_dim: int) -> list[str]:
    """Names of the latent columns, ``z_0`` ... ``z_{latent_dim-1}``."""
    return [f"{LATENT_PREFIX}{k}" for k in range(_check_latent_dim(latent_dim))]


def catalog_schema(latent_dim: int) -> tuple[ColumnSpec, ...]:
    """Every column of a catalogue with ``latent_dim`` latents, in catalogue order."""
    return _HEAD + tuple(_latent(k) for k in range(_check_latent_dim(latent_dim))) + _TAIL


def column_names(latent_dim: int) -> list[str]:
    """Column names of a catalogue with ``latent_dim`` latents, in catalogue order."""
    return [c.name for c in catalog_schema(latent_dim)]


_BY_NAME = {c.name: c for c in _HEAD + _TAIL}


def column_spec(name: str) -> ColumnSpec | None:
    """The spec of one column (any ``z_k`` is a latent), or ``None`` if not in the schema."""
    spec = _BY_NAME.get(name)
    if spec is None and _LATENT_RE.fullmatch(name):
        k = int(name[len(LATENT_PREFIX) :])
        if k < MAX_LATENT_DIM:
            spec = _latent(k)
    return spec


def _dtype_label(dt: np.dtype) -> str:
    if dt.kind in "US":
        return "string"
    return {"f8": "float64", "f4": "float32", "i2": "int16"}[dt.str[1:]]


def schema_markdown(latent_dim: int) -> str:
    """The schema as a markdown table (for the docs), latents ``z_0`` ... collapsed to one row."""
    lines = ["| column | type | unit | UCD | description |", "|---|---|---|---|---|"]
    latents = latent_names(latent_dim)
    for c in catalog_schema(latent_dim):
        if c.name.startswith(LATENT_PREFIX):
            if c.name != latents[0]:
                continue
            name = f"`{latents[0]}` ... `{latents[-1]}`" if len(latents) > 1 else f"`{latents[0]}`"
            desc = "pose-invariant morphology latents"
        else:
            name, desc = f"`{c.name}`", c.description
        lines.append(f"| {name} | {_dtype_label(c.dtype)} | {c.unit or ''} | `{c.ucd}` | {desc} |")
    bits = "; ".join(f"{bit}: {text}" for bit, text in FLAG_BITS.items())
    lines.append("")
    lines.append(f"`flags` bits: {bits}. Unknown float values (for example `pa_deg`) are NaN.")
    return "\n".join(lines) + "\n"
