"""Prefect orchestration of galaxy-codae: the ``galaxy-codae`` flow and its deployment.

- :mod:`flows.galaxy_codae`: the flow (ingest, train, infer, stack subflows) and its Dask cluster;
- :mod:`flows.tasks`: the tasks, one call into ``pipeline/`` or ``catalogs/`` each, cached and retried;
- :mod:`flows.artifacts`: the run's artifacts (counts table, figures, stack previews, summary);
- :mod:`flows.local_server`: ``python -m flows.local_server up|down|status``, a local Prefect server,
  work pool ``galaxy-codae-pool``, the deployment of ``prefect.yaml`` and a worker.

Nothing here is imported by ``pipeline/`` at module level.
"""
