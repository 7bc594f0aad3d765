"""Readers for survey inputs: catalogues (parquet, CSV, FITS tables) and cutouts (JPEG, PNG, FITS).

Formats are recognised by their first bytes (magic numbers), never by the file
extension.  Every image comes back in the *display frame* of
:mod:`pipeline.conventions` (row 0 = top row as displayed, north for survey
JPEGs): FITS images are flipped with :func:`pipeline.conventions.fits_to_display`.

Decoding a cutout straight into the store's crop and size
----------------------------------------------------------
:func:`read_cutout` crops the centre ``crop`` pixels (a square, in the cutout's
display frame) and resizes them to ``size`` pixels by area averaging
(:data:`RESAMPLE`, anti-aliased and flux-preserving).  For JPEGs it first asks PIL for *draft mode*: libjpeg scales the image
by 1/2, 1/4 or 1/8 in the DCT domain while decoding (a reduced inverse DCT of each
8x8 block's lowest frequencies: itself an anti-aliased reduction), never below the
resolution the output needs (:data:`DRAFT_OVERSAMPLE`).  For a 424-pixel Galaxy Zoo
cutout, the default 256-pixel crop and a 64-pixel store that is the 1/4 decode, which
needs 0.78x the time of a full-resolution decode of the demo JPEGs (quality 90 with
sky noise: Huffman decoding, which no scaling avoids, is most of the rest).  The crop
box is then given to ``Image.resize(box=...)`` in the reduced frame (sub-pixel
exact), so crop and resize are one resampling step.

Images that cannot be used raise :class:`RejectedImage` with a machine-readable
``reason`` (one of :data:`REJECT_REASONS`); the ingest writes them to the
rejects table instead of the store.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from PIL import Image

from pipeline.conventions import centre_crop_box, fits_to_display
from pipeline.errors import BadInputError

__all__ = [
    "REJECT_REASONS",
    "RejectedImage",
    "ImageInfo",
    "CropSpec",
    "FITS_STRETCH",
    "RESAMPLE",
    "sniff_format",
    "resolve_in_root",
    "probe_image",
    "read_cutout",
    "read_survey_catalog",
]

#: Reasons a catalogue row is rejected (the ``reason`` column of the rejects table).
REJECT_REASONS: tuple[str, ...] = (
    "missing_id",  # the id is null or empty
    "bad_id",  # the id breaks the id policy (catalogs.schema.id_problem: printable ASCII, no edge spaces, length)
    "duplicate_id",  # the id already occurred on an earlier row (the first occurrence is kept)
    "bad_coordinates",  # RA or Dec unparsable, non-finite, RA outside [0, 360) or Dec outside [-90, 90] deg
    "missing_file",  # the path is null or the file does not exist
    "outside_root",  # the path resolves (symbolic links included) outside the image root; never opened
    "bad_path",  # the path cannot name a file: NUL byte, too long, a symbolic-link loop, no permission
    "not_a_file",  # the path names a directory, a FIFO or a device, not a regular file
    "empty_file",  # the file has zero bytes
    "corrupt_image",  # truncated, corrupt or unrecognised image data
    "wrong_dimensions",  # width, height, channels or pixel kind differ from the survey's
    "nonfinite_pixels",  # NaN or inf pixels (FITS)
)

#: Per-image stretch applied to FITS cutouts (float data) before they are stored as float16,
#: after the crop and before the resize: ``clip((x - p_low) / (p_high - p_low), 0, 1)`` with the
#: percentiles taken over all bands of the cropped cutout (one scale for all bands keeps colours).
FITS_STRETCH: dict[str, object] = {
    "kind": "linear_percentile",
    "low_percentile": 0.5,
    "high_percentile": 99.9,
    "clip": [0.0, 1.0],
    "applied": "per image, all bands together, on the crop before the resize",
}

#: The resampling filter of the crop-and-resize step: PIL's BOX is an exact area average when
#: shrinking (each output pixel is the mean of the input area it covers, fractional pixels
#: weighted), i.e. detector-style binning: anti-aliased, flux-preserving, no ringing around bright
#: cores (Lanczos' negative lobes get clipped in uint8), and the fastest.  Measured on demo-survey
#: JPEGs on a loaded 2-core machine, one process: draft decode + BOX ran at 1.11x the bare
#: full-resolution decode rate, + LANCZOS at 0.77x (benchmarks/ingest.py).
RESAMPLE = Image.Resampling.BOX
#: JPEG draft decoding keeps at least this many decoded pixels per output pixel across the crop
#: (424 -> crop 256 -> 64: decoded at 1/4, 64 pixels across the crop).  Measured against a
#: full-resolution decode + crop + 4x4 area average on 300 demo cutouts: 1.0 (the 1/4 decode)
#: differs by a mean 0.45 grey levels, 99 % of pixels within 2, worst pixel 12; 1.5 (the 1/2
#: decode, then a 2x2 average) by 0.38, 2 and 10, and costs 1.2x as much per cutout.
DRAFT_OVERSAMPLE = 1.0

#: Largest cutout accepted, in pixels.  PIL's own guard (``Image.MAX_IMAGE_PIXELS``) warns before it
#: refuses, and its warning would print ahead of any error line, so the limit is checked here, on
#: the header, before any pixel is decoded (:func:`_pil_open`), and a bigger file is a rejected row.
MAX_CUTOUT_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = None  # our check above replaces PIL's warning


@contextmanager
def _pil_open(path: Path) -> Iterator[Image.Image]:
    """``Image.open`` (header only) with the size limit; any failure is a :class:`RejectedImage`."""
    try:
        im = Image.open(path)
    except Exception as e:
        raise RejectedImage("corrupt_image", f"{path}: unreadable image ({type(e).__name__}: {e})") from None
    with im:
        w, h = im.size
        if w * h > MAX_CUTOUT_PIXELS:
            msg = f"{path}: {w}x{h} pixels, more than the {MAX_CUTOUT_PIXELS:,} a cutout may have"
            raise RejectedImage("wrong_dimensions", msg)
        yield im


class RejectedImage(BadInputError):
    """A cutout that cannot go into the store; ``reason`` is one of :data:`REJECT_REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ImageInfo:
    """What a cutout file holds, read from its header.

    ``kind`` is ``"8bit"`` (JPEG, PNG) or ``"float"`` (FITS); ``width``/``height`` in pixels of the
    original file; ``channels`` is 1 (grey) or the number of colour bands.
    """

    format: str
    kind: str
    width: int
    height: int
    channels: int


@dataclass(frozen=True)
class CropSpec:
    """A square centre crop of the cutout and the output size.

    ``start_x``/``start_y``: first cropped column/row in the cutout's display frame (pixels, 0-based);
    ``crop_size``: crop side in pixels of the cutout; ``size``: output side in pixels.
    """

    start_x: int
    start_y: int
    crop_size: int
    size: int

    @classmethod
    def centred(cls, width: int, height: int, crop_size: int, size: int) -> CropSpec:
        """The centred crop of ``crop_size`` pixels from a ``width`` x ``height`` cutout."""
        return cls(centre_crop_box(width, crop_size), centre_crop_box(height, crop_size), crop_size, size)


# ----------------------------------------------------------------------------- images


def sniff_format(head: bytes) -> str | None:
    """``"jpeg"``, ``"png"`` or ``"fits"`` from a file's first bytes; None when unrecognised."""
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:9] == b"SIMPLE  =":
        return "fits"
    return None


def resolve_in_root(root: Path, rel: str) -> Path:
    """The file ``root / rel`` resolved (symbolic links followed), checked to lie inside ``root``.

    ``root`` must already be resolved (``Path.resolve()``).  Raises :class:`RejectedImage`
    with reason ``outside_root`` (an absolute path, ``..`` or a link leading out of the root)
    or ``bad_path`` (NUL byte, a name too long, a symbolic-link loop).  Nothing is opened.
    """
    if "\x00" in rel:
        raise RejectedImage("bad_path", f"{rel!r}: the path holds a NUL byte")
    try:
        resolved = Path(os.path.realpath(root / rel, strict=False))
    except (OSError, ValueError, RuntimeError) as e:  # loops, over-long names
        raise RejectedImage("bad_path", f"{rel!r}: cannot resolve ({type(e).__name__}: {e})") from None
    if resolved != root and root not in resolved.parents:
        raise RejectedImage("outside_root", f"{rel!r} resolves outside the image root {root}")
    return resolved


def _check_file(path: Path) -> str:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise RejectedImage("missing_file", f"{path}: no such file") from None
    except (OSError, ValueError) as e:  # ELOOP, ENAMETOOLONG, EACCES, embedded NUL
        raise RejectedImage("bad_path", f"{path}: cannot open ({type(e).__name__}: {e})") from None
    if not stat.S_ISREG(st.st_mode):
        what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise RejectedImage("not_a_file", f"{path}: {what}")
    if st.st_size == 0:
        raise RejectedImage("empty_file", f"{path}: empty file")
    try:
        with open(path, "rb") as f:
            fmt = sniff_format(f.read(16))
    except OSError as e:
        raise RejectedImage("bad_path", f"{path}: cannot open ({type(e).__name__}: {e})") from None
    if fmt is None:
        raise RejectedImage("corrupt_image", f"{path}: not a JPEG, PNG or FITS file")
    return fmt


_PIL_CHANNELS = {"L": 1, "RGB": 3, "P": 3, "RGBA": 3, "LA": 1, "I;16": 1, "I": 1, "CMYK": 3, "YCbCr": 3}


def _fits_image_hdu(hdul):  # first HDU holding a 2-D image or a (bands, H, W) cube
    for hdu in hdul:
        if getattr(hdu, "is_image", False) and hdu.header.get("NAXIS", 0) in (2, 3):
            return hdu
    return None


def probe_image(path: Path) -> ImageInfo:
    """Read a cutout's header only: format, pixel kind, width, height, channels.

    Raises :class:`RejectedImage` (missing, empty, corrupt).
    """
    fmt = _check_file(path)
    if fmt == "fits":
        from astropy.io import fits

        try:
            with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
                hdu = _fits_image_hdu(hdul)
                if hdu is None:
                    raise RejectedImage("wrong_dimensions", f"{path}: no 2-D or 3-D image HDU")
                h = hdu.header
                w, hh = int(h["NAXIS1"]), int(h["NAXIS2"])
                c = int(h["NAXIS3"]) if h["NAXIS"] == 3 else 1
        except RejectedImage:
            raise
        except Exception as e:
            raise RejectedImage("corrupt_image", f"{path}: unreadable FITS ({type(e).__name__}: {e})") from None
        return ImageInfo("fits", "float", w, hh, c)
    with _pil_open(path) as im:
        mode, (w, hh) = im.mode, im.size
    if mode not in _PIL_CHANNELS:
        raise RejectedImage("wrong_dimensions", f"{path}: unsupported image mode {mode}")
    return ImageInfo(fmt, "8bit", w, hh, _PIL_CHANNELS[mode])


def _check_shape(path: Path, info: ImageInfo, expect: ImageInfo) -> None:
    got = (info.kind, info.width, info.height, info.channels)
    want = (expect.kind, expect.width, expect.height, expect.channels)
    if got != want:
        msg = f"{path}: {info.kind} {info.width}x{info.height}x{info.channels}, survey is {expect.kind} {expect.width}x{expect.height}x{expect.channels}"
        raise RejectedImage("wrong_dimensions", msg)


def _read_8bit(path: Path, fmt: str, crop: CropSpec, expect: ImageInfo | None) -> NDArray[np.uint8]:
    with _pil_open(path) as im:  # parses the header only; opened once (an open costs ~0.2 ms)
        if im.mode not in _PIL_CHANNELS:
            raise RejectedImage("wrong_dimensions", f"{path}: unsupported image mode {im.mode}")
        info = ImageInfo(fmt, "8bit", im.size[0], im.size[1], _PIL_CHANNELS[im.mode])
        if expect is not None:
            _check_shape(path, info, expect)
        mode = "RGB" if info.channels == 3 else "L"
        try:
            if im.format == "JPEG":
                # Decode at 1/2, 1/4 or 1/8 in the DCT domain, keeping >= DRAFT_OVERSAMPLE * size
                # pixels across the crop; the area average below does any reduction left.
                need = math.ceil(DRAFT_OVERSAMPLE * info.width * crop.size / crop.crop_size)
                need_h = math.ceil(DRAFT_OVERSAMPLE * info.height * crop.size / crop.crop_size)
                im.draft(mode, (need, need_h))
            if im.mode in ("I;16", "I"):  # 16-bit PNG: scale to 8 bits
                scale = 257.0 if im.mode == "I;16" else max(1.0, float(np.max(np.asarray(im))) / 255.0)
                im = Image.fromarray(np.clip(np.asarray(im) / scale, 0, 255).astype(np.uint8))
            if im.mode != mode:
                im = im.convert(mode)
            sx, sy = info.width / im.size[0], info.height / im.size[1]
            box = (
                crop.start_x / sx,
                crop.start_y / sy,
                (crop.start_x + crop.crop_size) / sx,
                (crop.start_y + crop.crop_size) / sy,
            )
            out = im.resize((crop.size, crop.size), RESAMPLE, box=box)
            arr = np.asarray(out, dtype=np.uint8)
        except Exception as e:  # truncated data, bad Huffman tables, ...: PIL raises OSError/SyntaxError/ValueError
            raise RejectedImage("corrupt_image", f"{path}: cannot decode ({type(e).__name__}: {e})") from None
    if arr.ndim == 2:
        arr = arr[None]  # (1, H, W)
    else:
        arr = np.moveaxis(arr, -1, 0)  # (H, W, C) -> (C, H, W)
    return np.ascontiguousarray(arr)


def _read_fits(path: Path, crop: CropSpec) -> NDArray[np.float16]:
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False) as hdul:
            hdu = _fits_image_hdu(hdul)
            data = np.asarray(hdu.data, dtype=np.float64)
    except Exception as e:
        raise RejectedImage("corrupt_image", f"{path}: cannot read FITS data ({type(e).__name__}: {e})") from None
    if data.ndim == 2:
        data = data[None]  # (1, H, W)
    if not np.all(np.isfinite(data)):
        n = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise RejectedImage("nonfinite_pixels", f"{path}: {n} NaN or inf pixels")
    data = fits_to_display(data)  # (C, H, W), row 0 = top as displayed
    x0, y0, c = crop.start_x, crop.start_y, crop.crop_size
    cut = data[:, y0 : y0 + c, x0 : x0 + c]
    lo, hi = np.percentile(cut, [FITS_STRETCH["low_percentile"], FITS_STRETCH["high_percentile"]])
    scale = (hi - lo) if hi > lo else 1.0
    cut = np.clip((cut - lo) / scale, 0.0, 1.0).astype(np.float32)
    out = np.empty((cut.shape[0], crop.size, crop.size), dtype=np.float16)
    for b in range(cut.shape[0]):
        band = Image.fromarray(cut[b], mode="F").resize((crop.size, crop.size), RESAMPLE)
        out[b] = np.clip(np.asarray(band), 0.0, 1.0)  # float16 rounding only
    return out


def read_cutout(path: Path, crop: CropSpec, *, expect: ImageInfo | None = None) -> NDArray:
    """Decode one cutout, centre-crop and resize it: ``(C, size, size)`` in the display frame.

    JPEG/PNG give uint8 (0-255, as in the file); FITS gives float16 after :data:`FITS_STRETCH`.
    ``expect``: the survey's image shape; a different one raises ``RejectedImage("wrong_dimensions")``.
    """
    fmt = _check_file(path)
    if fmt != "fits":
        return _read_8bit(path, fmt, crop, expect)
    info = probe_image(path)
    if expect is not None:
        _check_shape(path, info, expect)
    return _read_fits(path, crop)


# ----------------------------------------------------------------------------- catalogues


def _fits_table(path: Path) -> pd.DataFrame:
    from astropy.table import Table

    t = Table.read(path, hdu=1)
    cols = {}
    for name in t.colnames:
        col = t[name]
        if col.ndim > 1:
            continue  # vector columns cannot be carried as 1-D store arrays
        arr = np.asarray(col)
        if arr.dtype.kind == "S":
            arr = np.char.decode(arr, "utf-8")
        if arr.dtype.kind in "SU":
            arr = np.char.strip(arr).astype(object)
        elif arr.dtype.byteorder not in ("=", "|"):
            arr = arr.astype(arr.dtype.newbyteorder("="))  # FITS is big-endian
        if hasattr(col, "mask") and np.any(col.mask):
            arr = pd.Series(arr).where(~np.asarray(col.mask)).to_numpy()
        cols[name] = arr
    return pd.DataFrame(cols)


def _csv(path: Path, keep_str: tuple[str, ...]) -> pd.DataFrame:
    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    for name in df.columns:
        if name in keep_str:
            continue
        num = pd.to_numeric(df[name], errors="coerce")
        if num.notna().sum() == df[name].notna().sum():  # every non-empty value is a number
            df[name] = num
    return df


def read_survey_catalog(path: Path, *, keep_str: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read an input catalogue (parquet, FITS binary table in HDU 1, or CSV with a header row).

    The format is recognised from the file's first bytes.  CSV columns that parse as numbers
    become numbers, except those named in ``keep_str`` (ids such as ``0012`` keep their zeros).
    Raises :class:`BadInputError` when the file does not exist or cannot be parsed.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"catalogue {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(16)
    try:
        if head[:4] == b"PAR1":
            return pd.read_parquet(path)
        if head[:9] == b"SIMPLE  =":
            return _fits_table(path)
        return _csv(path, keep_str)
    except BadInputError:
        raise
    except Exception as e:
        raise BadInputError(f"catalogue {path}: cannot read ({type(e).__name__}: {e})") from None
