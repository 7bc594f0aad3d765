"""The SHA-256 of a file: provenance of checkpoints (catalogue headers, run matching) and of input catalogues."""

from __future__ import annotations

import hashlib
import os

__all__ = ["file_sha256"]


def file_sha256(path: str | os.PathLike, *, block: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read ``block`` bytes at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()
