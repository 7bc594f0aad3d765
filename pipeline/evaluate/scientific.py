"""Stacks of scientific images (.npy, .npz, FITS cubes, .mrcs) as evaluation or training data.

The CODAE paper's other domains come as image stacks: cryo-EM particles (EMPIAR-10029, ``.mrcs``),
centred diffraction patterns (4D-STEM CBED, often ``.npy``/``.npz``) and astronomical cubes
(FITS).  :func:`load_stack` reads one into a float32 array (N, C, H, W) in the display frame of
:mod:`pipeline.conventions` (row 0 = top as displayed):

* ``.npy``: (N, H, W), (N, C, H, W) or (N, H, W, C) with C in {1, 3};
* ``.npz``: the array named by ``key``, else ``images``, else the only array in the file;
* ``.fits``/``.fit``/``.fts`` (optionally ``.gz``): the first HDU holding a 3-D (N, H, W) or
  4-D (N, C, H, W) image; FITS row 1 is the bottom, so rows are reversed
  (:func:`pipeline.conventions.fits_to_display`) and the big-endian data converted to native;
* ``.mrc``/``.mrcs`` (via ``mrcfile``, permissive): (N, H, W) or one (H, W) image; the MRC origin
  is the lower-left corner as IMOD and RELION display it, so rows are reversed as for FITS.

The extension decides the reader (the package's only such choice: these formats have no other
signature we can check cheaply); an unknown extension is a :class:`BadInputError`.

:func:`normalise_stack` maps values to [0, 1] (whole stack or per image, between two
percentiles); :func:`load_scientific` does both and resizes to the model's size.
:func:`write_store` writes such an array as a complete galaxy-codae Zarr store (float16 images,
ids ``"0".."N-1"``, ra/dec NaN), so ``galaxy-codae train --store`` runs on it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from numpy.typing import NDArray

from pipeline.conventions import fits_to_display
from pipeline.errors import BadInputError

__all__ = ["STACK_SUFFIXES", "load_stack", "normalise_stack", "load_scientific", "write_store"]

STACK_SUFFIXES = (".npy", ".npz", ".fits", ".fit", ".fts", ".fits.gz", ".mrc", ".mrcs")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for s in sorted(STACK_SUFFIXES, key=len, reverse=True):
        if name.endswith(s):
            return s
    return path.suffix.lower()


def _to_nchw(a: NDArray, path: Path) -> NDArray[np.float32]:
    """(N, H, W) / (N, C, H, W) / (N, H, W, C) -> float32 (N, C, H, W)."""
    a = np.asarray(a)
    if a.dtype.kind not in "iuf":
        raise BadInputError(f"{path}: images must be numbers, got dtype {a.dtype}")
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4 and a.shape[1] not in (1, 3) and a.shape[-1] in (1, 3):
        a = np.moveaxis(a, -1, 1)
    if a.ndim != 4 or a.shape[1] not in (1, 3):
        raise BadInputError(f"{path}: expected a stack (N, H, W), (N, C, H, W) or (N, H, W, C) with C 1 or 3; "
                            f"got shape {a.shape}")
    if a.shape[0] < 1 or a.shape[2] != a.shape[3]:
        raise BadInputError(f"{path}: images must be square and the stack non-empty; got shape {a.shape}")
    out = a.astype(np.float32)  # native byte order whatever the file's
    if not np.all(np.isfinite(out)):
        raise BadInputError(f"{path}: the stack holds NaN or infinite values")
    return out


def load_stack(path: str | Path, *, key: str | None = None) -> NDArray[np.float32]:
    """Read a stack of images into float32 (N, C, H, W), display frame, values as stored."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"image stack not found: {path}")
    kind = _suffix(path)
    try:
        if kind == ".npy":
            return _to_nchw(np.load(path, allow_pickle=False), path)
        if kind == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                names = list(npz.files)
                if key is None:
                    key = "images" if "images" in names else (names[0] if len(names) == 1 else None)
                if key is None or key not in names:
                    raise BadInputError(f"{path}: name the array to use (--key); the file holds {names}")
                return _to_nchw(npz[key], path)
        if kind in (".fits", ".fit", ".fts", ".fits.gz"):
            from astropy.io import fits

            with fits.open(path, memmap=False) as hdus:
                for hdu in hdus:
                    if hdu.data is not None and getattr(hdu, "is_image", False) and hdu.data.ndim in (3, 4):
                        return _to_nchw(fits_to_display(np.asarray(hdu.data)), path)
            raise BadInputError(f"{path}: no 3-D (N, H, W) or 4-D image HDU in this FITS file")
        if kind in (".mrc", ".mrcs"):
            import mrcfile

            with mrcfile.open(path, mode="r", permissive=True) as mrc:
                if mrc.data is None:
                    raise BadInputError(f"{path}: MRC file holds no data")
                data = np.asarray(mrc.data)
            data = data[None] if data.ndim == 2 else data
            return _to_nchw(np.ascontiguousarray(data[..., ::-1, :]), path)
    except BadInputError:
        raise
    except (OSError, ValueError) as e:
        raise BadInputError(f"{path}: cannot read the image stack ({type(e).__name__}: {e})") from None
    raise BadInputError(f"{path}: unknown stack format {kind!r} (one of {', '.join(STACK_SUFFIXES)})")


def normalise_stack(stack: NDArray, *, mode: Literal["stack", "image"] = "stack",
                    percentiles: tuple[float, float] = (0.1, 99.9)) -> NDArray[np.float32]:
    """Map values linearly to [0, 1] between two percentiles (clipped): of the whole stack
    (keeps relative brightness, e.g. diffraction) or of each image (e.g. cryo-EM particles)."""
    a = np.asarray(stack, dtype=np.float32)
    axes = None if mode == "stack" else tuple(range(1, a.ndim))
    lo = np.percentile(a, percentiles[0], axis=axes, keepdims=True)
    hi = np.percentile(a, percentiles[1], axis=axes, keepdims=True)
    return np.clip((a - lo) / np.maximum(hi - lo, 1e-12), 0.0, 1.0).astype(np.float32)


def load_scientific(path: str | Path, *, size: int | None = 64, key: str | None = None,
                    normalise: Literal["stack", "image"] = "stack") -> NDArray[np.float32]:
    """:func:`load_stack`, :func:`normalise_stack`, then an antialiased bilinear resize to ``size``
    pixels (None keeps the size).  Returns float32 (N, C, size, size) in [0, 1]."""
    a = normalise_stack(load_stack(path, key=key), mode=normalise)
    if size is None or a.shape[-1] == size:
        return a
    t = torch.nn.functional.interpolate(torch.from_numpy(a), size=(size, size), mode="bilinear", antialias=True,
                                        align_corners=False)
    return t.clamp(0, 1).numpy()


def write_store(images: NDArray, out: str | Path, *, source: str = "", overwrite: bool = False,
                shard_size: int = 1024, chunk_size: int = 8) -> Path:
    """Write images (N, C, S, S) in [0, 1] as a complete store (:func:`pipeline.data.store_write.write_array_store`).

    float16 images, ``id`` = ``"0".."N-1"``, ``ra``/``dec`` NaN, ``source_path`` = ``source``,
    ``row`` = 0..N-1; the crop is the whole image.  Written under ``<out>.partial`` and renamed
    when complete; an existing ``out`` is refused unless ``overwrite``.
    """
    from pipeline.data.store_write import write_array_store

    a = np.asarray(images)
    if a.ndim != 4 or a.shape[2] != a.shape[3]:
        raise BadInputError(f"write_store: images must be (N, C, S, S), got {a.shape}")
    pre = {"source_format": "stack", "crop": "none (the stack as loaded by pipeline.evaluate.scientific)",
           "resample": "bilinear, antialiased (torch)"}
    return write_array_store(out, a.astype(np.float16), preprocessing=pre, order="stack order", source=source,
                             overwrite=overwrite, shard_size=shard_size, chunk_size=chunk_size)
