"""The galaxy-codae catalogue: schema (:mod:`catalogs.schema`), FITS/Parquet writer
(:mod:`catalogs.fits_io`, header cards by :mod:`catalogs.fits_header`) and reader
(:mod:`catalogs.reader`), CFITSIO-style row filters (:mod:`catalogs.rowfilter`), their
application to tables and files (:mod:`catalogs.select`) and output formats
(:mod:`catalogs.formats`).

Needs numpy and astropy only (pyarrow for Parquet, imported when used); never torch, prefect
or the ``pipeline`` package, which builds on this one.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("galaxy-codae")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
