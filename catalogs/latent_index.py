"""Exact nearest neighbours in an embedding of the pose-free latents: the metrics and the search backends.

Metrics
-------
Both are Euclidean distances in an embedding of the latents ``z_0 ... z_{d-1}``:

- ``standardised`` (default): each latent column minus its median, divided by 1.4826 x its
  median absolute deviation (MAD), so every latent counts alike and a few outlying galaxies do
  not set the scale.  A column with zero MAD falls back to its standard deviation, then to 1.
  The centre and scale come from the whole catalogue, so a row filter narrows the candidates
  without changing the distances.
- ``euler``: the Euler encoding ``(cos z_i, sin z_i)`` that the decoder reads (the latents are
  angles to it: ``z_i`` and ``z_i + 2 pi`` decode to the same image), with no rescaling, so a
  latent the model leaves almost constant adds almost nothing to the distance.

Search
------
Exact: every distance is computed, nothing is approximated.  Backends:

- ``kdtree``: ``scipy.spatial.cKDTree`` (exact; queries on every core).  It examines only the
  branches that can hold a nearer point, so it is far faster than brute force when the latents
  fill few dimensions (as trained latents tend to), and slower when they fill many.
- ``numpy``: brute force, blocked matrix products ``|q|^2 - 2 q.x + |x|^2`` in float32 with
  ``argpartition``; needs nothing beyond numpy.
- ``torch``: brute force with torch (blocked ``addmm`` and ``topk`` on every core); on two idle
  cores about 12 times faster than numpy's ``argpartition`` over whole catalogues.  Used when torch
  imports, as it does wherever the galaxy-codae package is installed.
- ``faiss``: brute force with ``faiss.IndexFlatL2`` (blocked BLAS products, a heap per query,
  OpenMP threads), used only when ``faiss-cpu`` happens to be installed.

All return the same neighbours (ties aside); the k distances are recomputed in float64 from the
embedded coordinates, so they do not carry the float32 cancellation of the product form.  A
single search uses numpy brute force, whose cost (one pass over the rows) does not depend on how
the latents fill their space; a whole-catalogue search (``--all``) times brute force (faiss,
else torch, else numpy) and the tree on its first queries and keeps the faster: the tree wins by 5-15x when
the latents fill few dimensions and loses by 2-7x when they fill all 16.  ``benchmarks/similar.py``
prints the measurements behind this choice.

Beyond a few million rows an exhaustive search stops being interactive; there, FAISS's
``IndexHNSWFlat`` or ``IndexIVFFlat`` (approximate, tunable recall) are the next step.

Needs numpy (scipy for the tree; torch or faiss-cpu for the faster brute force when they import;
each imported only when used); never prefect.  The searches over catalogue files are in :mod:`catalogs.neighbours`.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from catalogs.errors import BadInputError

__all__ = ["METRICS", "BACKENDS", "PROBE_QUERIES", "MAD_TO_SIGMA", "Embedding", "NeighbourIndex", "embed",
           "default_backend"]

#: distance definitions (see the module docstring).
METRICS: tuple[str, ...] = ("standardised", "euler")
#: search backends (see :class:`NeighbourIndex` for ``auto``).
BACKENDS: tuple[str, ...] = ("auto", "kdtree", "numpy", "torch", "faiss")
#: queries ``auto`` times on each backend before it picks one for a whole-catalogue search.
PROBE_QUERIES: int = 2000
#: 1.4826 x MAD estimates the standard deviation of a normal distribution.
MAD_TO_SIGMA: float = 1.482602218505602

#: query rows per block of the brute-force backends (numpy, torch): (block x N) float32 distances at a time.
_BLOCK = 1024


@dataclass(frozen=True)
class Embedding:
    """How latents become search coordinates: ``metric`` and, for ``standardised``, per-column
    ``centre`` (median) and ``scale`` (1.4826 x MAD), each (d,) float64; None for ``euler``."""

    metric: str
    centre: NDArray[np.float64] | None = None
    scale: NDArray[np.float64] | None = None

    def __call__(self, z: NDArray) -> NDArray[np.float32]:
        """(N, d) latents -> (N, d) or (N, 2 d) float32 coordinates."""
        z = np.asarray(z, dtype=np.float64)
        if z.ndim == 1:
            z = z[None, :]
        if self.metric == "euler":
            return np.ascontiguousarray(np.concatenate([np.cos(z), np.sin(z)], axis=1), dtype=np.float32)
        return np.ascontiguousarray((z - self.centre) / self.scale, dtype=np.float32)


def embed(z: NDArray, metric: str = "standardised", *, reference: NDArray | None = None
          ) -> tuple[NDArray[np.float32], Embedding]:
    """Search coordinates of latents ``z`` (N, d) and the :class:`Embedding` that made them.

    ``standardised`` takes its median and MAD from the finite rows of ``reference`` (default
    ``z`` itself; the catalogue searches pass the whole catalogue, so a distance does not depend on
    the selection).  Non-finite latents in ``z`` are a :class:`BadInputError`.
    """
    if metric not in METRICS:
        raise BadInputError(f"unknown metric {metric!r} (one of {', '.join(METRICS)})")
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] == 0:
        raise BadInputError(f"latents must be (rows, d), got shape {z.shape}")
    bad = ~np.isfinite(z).all(axis=1)
    if bad.any():
        raise BadInputError(f"{int(bad.sum())} row(s) have non-finite latents (first row {int(np.flatnonzero(bad)[0])})")
    if metric == "euler":
        emb = Embedding("euler")
        return emb(z), emb
    ref = z if reference is None else np.asarray(reference, dtype=np.float64)
    ref = ref[np.isfinite(ref).all(axis=1)]
    if len(ref) == 0:
        raise BadInputError("no row with finite latents to take the median and MAD from")
    centre = np.median(ref, axis=0)
    scale = MAD_TO_SIGMA * np.median(np.abs(ref - centre), axis=0)
    std = ref.std(axis=0)
    scale = np.where(scale > 0, scale, np.where(std > 0, std, 1.0))
    emb = Embedding("standardised", centre, scale)
    return emb(z), emb


def default_backend() -> str:
    """The brute-force backend for many queries: ``faiss`` when faiss-cpu imports, else ``torch``
    when torch does, else ``numpy``."""
    for name in ("faiss", "torch"):
        if importlib.util.find_spec(name) is not None:  # found, not imported
            return name
    return "numpy"


class NeighbourIndex:
    """Exact k-nearest-neighbour search over points (N, D) float32 (see the module docstring).

    ``backend``: ``kdtree``, ``numpy``, ``torch`` or ``faiss``, or ``auto``: numpy brute force for
    single searches; for :meth:`all_neighbours`, whichever of brute force (:func:`default_backend`)
    and the k-d tree is faster on a first block of queries (all exact).  ``backend`` holds the one in use.  Structures are built
    on first use.
    """

    def __init__(self, points: NDArray, *, backend: str = "auto") -> None:
        if backend not in BACKENDS:
            raise BadInputError(f"unknown search backend {backend!r} (one of {', '.join(BACKENDS)})")
        self.points = np.ascontiguousarray(points, dtype=np.float32)
        if self.points.ndim != 2:
            raise BadInputError(f"points must be (rows, dims), got shape {self.points.shape}")
        self.auto = backend == "auto"
        self.backend = "numpy" if backend == "auto" else backend
        self._built: dict[str, object] = {}

    def __len__(self) -> int:
        return len(self.points)

    def _structure(self, backend: str):
        """The search structure of a backend, built once."""
        if backend not in self._built:
            if backend == "faiss":
                import faiss

                index = faiss.IndexFlatL2(self.points.shape[1])
                index.add(self.points)
                self._built[backend] = index
            elif backend == "torch":
                import torch

                x = torch.from_numpy(self.points)
                self._built[backend] = (x, (x * x).sum(dim=1))  # points and |x|^2
            elif backend == "kdtree":
                from scipy.spatial import cKDTree

                self._built[backend] = cKDTree(self.points.astype(np.float64))
            else:
                self._built[backend] = np.einsum("ij,ij->i", self.points, self.points)  # (N,) |x|^2
        return self._built[backend]

    def _raw(self, queries: NDArray[np.float32], k: int, backend: str) -> NDArray[np.int64]:
        """Indices of the k nearest points of each query (Q, k), nearest first."""
        structure = self._structure(backend)
        if backend == "faiss":
            _, idx = structure.search(queries, k)
            return idx.astype(np.int64, copy=False)
        if backend == "kdtree":
            _, idx = structure.query(queries.astype(np.float64), k=k, workers=-1)
            return np.asarray(idx, dtype=np.int64).reshape(len(queries), k)
        if backend == "torch":
            import torch

            x, sq = structure
            q_all = torch.from_numpy(queries)
            with torch.inference_mode():  # |x|^2 - 2 q.x per block; |q|^2 is the same along a row
                parts = [torch.addmm(sq[None, :], q_all[a:a + _BLOCK], x.T, alpha=-2.0)
                         .topk(k, dim=1, largest=False, sorted=True).indices
                         for a in range(0, len(q_all), _BLOCK)]
            return torch.cat(parts).numpy()  # int64
        out = np.empty((len(queries), k), dtype=np.int64)
        for a in range(0, len(queries), _BLOCK):
            q = queries[a:a + _BLOCK]
            d2 = structure[None, :] - 2.0 * (q @ self.points.T)  # (B, N); |q|^2 is the same along a row
            if k < d2.shape[1]:
                part = np.argpartition(d2, k - 1, axis=1)[:, :k]
            else:
                part = np.tile(np.arange(d2.shape[1]), (len(q), 1))
            order = np.argsort(np.take_along_axis(d2, part, axis=1), axis=1, kind="stable")
            out[a:a + len(q)] = np.take_along_axis(part, order, axis=1)
        return out

    def _exact(self, queries: NDArray[np.float32], idx: NDArray[np.int64]) -> tuple[NDArray, NDArray]:
        """Distances recomputed in float64 for (Q, k) indices, re-sorted nearest first."""
        diff = self.points[idx].astype(np.float64) - queries[:, None, :].astype(np.float64)  # (Q, k, D)
        dist = np.sqrt(np.einsum("qkd,qkd->qk", diff, diff))
        order = np.argsort(dist, axis=1, kind="stable")
        return np.take_along_axis(dist, order, axis=1), np.take_along_axis(idx, order, axis=1)

    def search(self, queries: NDArray, k: int, *, exclude: NDArray | None = None,
               backend: str | None = None) -> tuple[NDArray, NDArray]:
        """The ``k`` nearest points of each query: distances (Q, k) float64 and indices (Q, k) int64.

        ``exclude``: (Q,) an index per query to leave out (the query's own row; -1 for none).
        ``backend``: override :attr:`backend` for this call.  Raises :class:`BadInputError` when
        fewer than ``k`` points remain.
        """
        backend = backend or self.backend
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.shape[1] != self.points.shape[1]:
            raise BadInputError(f"queries have {q.shape[1]} coordinates, the index {self.points.shape[1]}")
        available = len(self) - (0 if exclude is None else 1)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise BadInputError(f"k must be a positive integer, got {k!r}")
        if k > available:
            raise BadInputError(f"k = {k} is larger than the {available} galaxies that can be neighbours")
        if exclude is None:
            return self._exact(q, self._raw(q, k, backend))
        exclude = np.asarray(exclude, dtype=np.int64).reshape(-1)
        raw = self._raw(q, k + 1, backend)
        keep = raw != exclude[:, None]
        # drop the excluded index where it was found, else the farthest of the k + 1
        keep[keep.all(axis=1), -1] = False
        return self._exact(q, raw[keep].reshape(len(q), k))

    def all_neighbours(self, k: int, *, block: int = 16384,
                       progress: Callable[[int, int, float], None] | None = None) -> tuple[NDArray, NDArray]:
        """Every point's ``k`` nearest other points: distances (N, k) and indices (N, k).

        Queries go in blocks of ``block`` rows; ``progress(done, total, seconds)`` after each.
        With ``backend='auto'`` the first :data:`PROBE_QUERIES` queries are run by brute force and
        by the k-d tree, and the faster goes on with the rest.
        """
        n = len(self)
        dist = np.empty((n, k), dtype=np.float64)
        idx = np.empty((n, k), dtype=np.int64)
        t0 = time.monotonic()
        start = 0
        if self.auto and n > PROBE_QUERIES:
            rows = np.arange(PROBE_QUERIES)
            seconds = {}
            for backend in (default_backend(), "kdtree"):
                t = time.monotonic()
                dist[rows], idx[rows] = self.search(self.points[rows], k, exclude=rows, backend=backend)
                seconds[backend] = time.monotonic() - t
            self.backend = min(seconds, key=seconds.get)
            start = PROBE_QUERIES
        for a in range(start, n, block):
            rows = np.arange(a, min(a + block, n))
            dist[rows], idx[rows] = self.search(self.points[rows], k, exclude=rows)
            if progress is not None:
                progress(int(rows[-1]) + 1, n, time.monotonic() - t0)
        return dist, idx

