"""Catalogue queries: the row-filter language and its application to tables and files.

One import for what ``galaxy-codae query`` does: the language is :mod:`catalogs.rowfilter`
(syntax in :mod:`catalogs.filter_syntax`, functions in :mod:`catalogs.filter_functions`),
selecting rows of tables and catalogue files is :mod:`catalogs.select` (with cone searches),
and the output formats are :mod:`catalogs.formats`.
"""

from catalogs.formats import EXTENSIONS, FORMATS, format_text, output_format, write_table
from catalogs.rowfilter import MAX_DEPTH, MAX_EXPRESSION_LENGTH, RowFilter, compile_filter
from catalogs.select import Cone, count, parse_cone, query_catalog, row_mask, select_rows, write_selection

__all__ = [
    "EXTENSIONS",
    "FORMATS",
    "MAX_DEPTH",
    "MAX_EXPRESSION_LENGTH",
    "Cone",
    "RowFilter",
    "compile_filter",
    "count",
    "format_text",
    "output_format",
    "parse_cone",
    "query_catalog",
    "row_mask",
    "select_rows",
    "write_selection",
    "write_table",
]
