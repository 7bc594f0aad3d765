"""FITS header helpers shared by every file this project writes (catalogue, selections, stacks).

One place decides how a value becomes a card: JSON for dicts and lists, printable ASCII only,
finite numbers only, a comment dropped (not truncated with a warning) when it does not fit on
the card, and strings longer than a card written with the OGIP ``CONTINUE`` convention plus its
``LONGSTRN`` keyword, which keeps ``fitsverify`` free of errors and warnings.

Provenance keywords (friendly name -> FITS keyword) are :data:`PROVENANCE_KEYWORDS`; the
keywords a writer sets itself (``DATE``, ``CREATOR``, ``LATDIM``, ``LONGSTRN`` and the
structural ones) cannot be set by a caller (:data:`STRUCTURAL`).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from catalogs.errors import BadInputError

__all__ = [
    "COMMENTS",
    "PRINTABLE",
    "PROVENANCE_KEYWORDS",
    "STRUCTURAL",
    "WRITER_KEYWORDS",
    "header_value",
    "printable",
    "provenance_cards",
    "set_cards",
    "utc_now",
]

#: friendly header name -> (FITS keyword, comment).  Writers accept either form; readers
#: return the FITS keywords.
PROVENANCE_KEYWORDS: dict[str, tuple[str, str]] = {
    "software_version": ("SWVERS", "galaxy-codae version"),
    "checkpoint_sha256": ("CKPTSHA", "SHA-256 of the model checkpoint"),
    "image_size": ("IMGSIZE", "[pix] side of the cutouts fed to the model"),
    "crop": ("CROP", "[pix] centre crop of the original cutout"),
    "config": ("INFCONF", "inference configuration (JSON)"),
}
#: FITS keyword -> its standard comment.
COMMENTS: dict[str, str] = {kw: comment for kw, comment in PROVENANCE_KEYWORDS.values()}
COMMENTS.update(
    {
        "DATE": "file creation time (UTC)",
        "CREATOR": "software that wrote this file",
        "LATDIM": "latent size d: columns z_0 ... z_{d-1}",
        "LONGSTRN": "OGIP long string convention (CONTINUE cards)",
    }
)

#: keywords every writer of ours sets itself (catalogues, selections, stacks): a caller may not set
#: them and a copy of another file's header leaves them out.  Readers report all but LONGSTRN (a
#: convention flag, not provenance).
WRITER_KEYWORDS = ("DATE", "CREATOR", "LATDIM", "LONGSTRN")
#: keywords the writer owns (the table's structure and :data:`WRITER_KEYWORDS`); a caller may not set them.
STRUCTURAL = re.compile(
    r"(SIMPLE|XTENSION|BITPIX|NAXIS\d*|EXTEND|PCOUNT|GCOUNT|TFIELDS|EXTNAME|EXTVER|THEAP|END|"
    r"T(TYPE|FORM|UNIT|UCD|COMM|DISP|NULL|SCAL|ZERO|DIM)\d+|" + "|".join(WRITER_KEYWORDS) + "|CHECKSUM|DATASUM)"
)
_KEYWORD = re.compile(r"[A-Z0-9_-]{1,8}")
PRINTABLE = re.compile(r"[ -~]*")
_LONG = 60  # characters of a string value that fit on one card with its quotes


def utc_now() -> str:
    """The current time, UTC, as FITS ``DATE`` wants it (``YYYY-MM-DDThh:mm:ss``)."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def printable(text: str) -> str:
    """``text`` with every character outside printable ASCII replaced by ``?`` (for user text)."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def header_value(key: str, value: Any) -> Any:
    """A value a card can hold: dicts and lists as JSON, numpy scalars as Python, paths as text.

    Raises :class:`BadInputError` for a type FITS cannot hold, a non-finite number or a
    non-printable string.
    """
    if isinstance(value, (dict, list, tuple)):
        value = json.dumps(value, sort_keys=True, ensure_ascii=True, default=str)
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        value = value.item()
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, (str, int, float, bool)):
        raise BadInputError(f"header {key}: cannot store a {type(value).__name__} in a FITS header")
    if isinstance(value, float) and not np.isfinite(value):
        raise BadInputError(f"header {key}: non-finite value {value}")
    if isinstance(value, str) and not PRINTABLE.fullmatch(value):
        raise BadInputError(f"header {key}: value must be printable ASCII")
    return value


def provenance_cards(header: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
    """(keyword, value, comment) for a caller's header mapping, checked.

    Keys are names of :data:`PROVENANCE_KEYWORDS` or FITS keywords; items are values or
    ``(value, comment)`` pairs.  A keyword the writer owns, a key that is not a FITS keyword
    or a value a card cannot hold is a :class:`BadInputError`.
    """
    cards = []
    for key, item in header.items():
        keyword, comment = PROVENANCE_KEYWORDS.get(key, (str(key).upper(), COMMENTS.get(str(key).upper(), "")))
        if not _KEYWORD.fullmatch(keyword):
            raise BadInputError(f"header key {key!r} is not a FITS keyword (A-Z, 0-9, _ or -, at most 8)")
        if STRUCTURAL.fullmatch(keyword) or keyword in ("COMMENT", "HISTORY"):
            raise BadInputError(f"header key {key!r} is set by the writer")
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], str) and not isinstance(item[0], tuple):
            item, comment = item
        if keyword == "CKPTSHA" and not re.fullmatch(r"[0-9a-f]{64}", str(item)):
            raise BadInputError(f"checkpoint_sha256 must be 64 lower-case hex digits, got {item!r}")
        cards.append((keyword, header_value(keyword, item), comment))
    return cards


def _fitting_comment(keyword: str, value: Any, comment: str) -> str:
    """The comment if it fits on the value's card (astropy warns when it truncates one), else ''."""
    if isinstance(value, str) and len(value) > _LONG:  # a CONTINUE long string: no comment
        return ""
    text = str(fits.Card(keyword, value))
    return comment if len(text.rstrip()) + 3 + len(comment) <= 80 else ""


def set_cards(header: fits.Header, cards: Iterable[tuple[str, Any, str]], *, longstrn_before: str | None = None,
              keep_dropped: bool = True) -> None:
    """Set (keyword, value, comment) cards on ``header``, the way every writer here does.

    Values go through :func:`header_value`; a comment that does not fit on its card is
    dropped from the card and, with ``keep_dropped``, added as a ``COMMENT`` card
    (``KEYWORD: comment``).  When a string needs ``CONTINUE`` cards, ``LONGSTRN`` is set
    (before ``longstrn_before`` when that keyword is in the header, else at the end).
    """
    dropped, long = [], False
    for keyword, value, comment in cards:
        value = header_value(keyword, value)
        fitting = _fitting_comment(keyword, value, comment)
        header[keyword] = (value, fitting)
        long |= isinstance(value, str) and len(value) > _LONG
        if comment and not fitting:
            dropped.append(f"{keyword}: {comment}")
    if long and "LONGSTRN" not in header:
        if longstrn_before is not None and longstrn_before in header:
            header.set("LONGSTRN", "OGIP 1.0", COMMENTS["LONGSTRN"], before=longstrn_before)
        else:
            header.set("LONGSTRN", "OGIP 1.0", COMMENTS["LONGSTRN"])
    if keep_dropped:
        for text in dropped:
            header.add_comment(text[:72])
