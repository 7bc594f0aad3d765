"""Survey data: the ingest, the Zarr store (its writer and reader) and the datasets over it.  Simulated data
with known truth are in :mod:`pipeline.simulate`."""
