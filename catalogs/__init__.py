"""The galaxy-codae catalogue: schema (:mod:`catalogs.schema`), FITS/Parquet writer and
reader (:mod:`catalogs.fits_io`) and CFITSIO-style row filters (:mod:`catalogs.query`).

Needs numpy and astropy only (pyarrow for Parquet, imported when used); never torch or prefect.
"""
