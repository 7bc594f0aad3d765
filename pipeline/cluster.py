"""The one way this project starts a local Dask cluster, or connects to a running one.

A ``distributed.LocalCluster`` listens on TCP: its scheduler, its workers and (by default) a
web dashboard on port 8787 of *every* interface, which answers without authentication.  Every
cluster started here binds to the loopback interface only (:data:`LOOPBACK`) and starts no
dashboard, unless the caller passes ``dashboard_address`` (for example ``"127.0.0.1:8787"``)
or ``host``.  (Without a dashboard the scheduler still serves its health and info routes over
HTTP; they go to a free port of the same interface rather than to 8787.)  Workers are single-threaded processes: the per-shard tasks of the ingest and the
inference hold the GIL in PIL, numpy and torch code, so processes scale and threads do not.

Note (measured, see ../shared/PITFALLS.md): starting a ``LocalCluster`` sets
``OMP_NUM_THREADS=1`` in this process's environment; torch work started afterwards in the same
process calls :func:`pipeline.device.set_cpu_threads` itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pipeline.errors import ConfigError

__all__ = ["LOOPBACK", "local_cluster", "dask_client"]

#: The interface every cluster started here listens on, unless the caller asks for another.
LOOPBACK = "127.0.0.1"


@contextmanager
def local_cluster(
    workers: int,
    *,
    host: str = LOOPBACK,
    dashboard_address: str | None = None,
    env: Mapping[str, str] | None = None,
    silence_logs: int = 40,
) -> Iterator[Any]:
    """A ``LocalCluster`` of ``workers`` single-threaded worker processes, closed on exit.

    ``host``: the interface the scheduler and workers listen on (loopback by default);
    ``dashboard_address``: None for no dashboard, or an address such as ``"127.0.0.1:0"``;
    ``env``: environment variables for the worker processes.
    """
    from distributed import LocalCluster

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    # no dashboard: the scheduler's remaining HTTP routes on a free port of ``host``
    scheduler_kwargs = {"dashboard": False, "dashboard_address": f"{host}:0"} if dashboard_address is None else None
    with LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host=host,
        dashboard_address=dashboard_address,
        worker_dashboard_address=None,
        scheduler_kwargs=scheduler_kwargs,
        silence_logs=silence_logs,
        env=dict(env or {}),
    ) as cluster:
        yield cluster


@contextmanager
def dask_client(workers: int = 1, scheduler: str | None = None, **cluster_kwargs: Any) -> Iterator[Any]:
    """A Dask client for a step's tasks, or None when they run in this process.

    ``scheduler``: address of a running scheduler (it is left running); otherwise ``workers`` > 1
    starts :func:`local_cluster` (closed on exit, keyword arguments passed on) and 1 yields None.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    if scheduler is None and workers == 1:
        yield None
        return
    from distributed import Client

    if scheduler is not None:
        with Client(scheduler) as client:
            yield client
        return
    with local_cluster(workers, **cluster_kwargs) as cluster, Client(cluster) as client:
        yield client
