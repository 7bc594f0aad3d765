"""Safe writes: atomic files and directories, and what ``--overwrite`` may replace.

Every output of galaxy-codae is written under a temporary name in its final directory, flushed
to disk (fsync) and renamed into place, so a reader sees the old file or the new one, never half
of one; a failed write removes its temporary.  :func:`atomic_path` hands the temporary name to
a library writer (``np.save``, ``pq.write_table``, ``torch.save``, ``DataFrame.to_csv``);
:func:`atomic_paths` does the same for files that go together; :func:`atomic_open` gives a file
object; :func:`write_bytes`, :func:`write_text` and
:func:`write_json` cover the rest.  A directory is built under a work name and published with
:func:`replace_dir`.

Ownership (the ``--overwrite`` rule)
------------------------------------
``--overwrite`` replaces only what this project wrote:

* a directory (run, evaluation, demo survey) that holds :data:`OWNER_FILE`, written by
  :func:`mark_owned`, or a Zarr store whose ``zarr.json`` attributes hold the same record under
  :data:`OWNER_KEY` (:func:`owner_record`; Zarr warns about foreign files inside a store), and
  nothing at its top level besides the entries that record lists (a folder someone added a
  file to is no longer ours alone);
* a file that carries this project's signature (:func:`is_ours_file`: a FITS file whose
  ``CREATOR`` card starts with ``galaxy-codae``, a Parquet file whose metadata holds the
  ``galaxy_codae.header`` key, a text file that names ``galaxy-codae`` in its first lines,
  a PNG with a ``galaxy-codae`` text chunk);
* never a path that is, or contains, one of the step's inputs; never a symbolic link.

:func:`overwrite_refusal` says why a path may not be replaced (None when it may).  Every step
checks its outputs with :func:`check_output_file` (a file) or :func:`check_output` (a file or
a directory), which raise the step's error class with one line: ``X exists; pass --overwrite to
replace it`` without ``overwrite``, ``--overwrite will not replace X: why`` when the rule
refuses; :func:`check_absent` is the first half alone, for a command that fails early before
the writer checks again.  This module needs the standard library only (``catalogs/`` and
``pipeline/`` both use it).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = [
    "OWNER_FILE",
    "OWNER_KEY",
    "SIGNATURE",
    "atomic_path",
    "atomic_paths",
    "atomic_open",
    "write_bytes",
    "write_text",
    "write_json",
    "fsync_dir",
    "replace_dir",
    "owner_record",
    "mark_owned",
    "owned_kind",
    "is_ours_file",
    "overwrite_refusal",
    "check_may_replace",
    "check_absent",
    "check_output",
    "check_output_file",
    "remove_owned",
]

#: The file that marks a directory as written by galaxy-codae: JSON ``{"kind": ..., "entries": [...]}``.
OWNER_FILE = ".galaxy-codae.json"
#: The attribute of a Zarr group (in its ``zarr.json``) that holds the same record as :data:`OWNER_FILE`.
OWNER_KEY = "galaxy_codae_owner"
#: The word every file this project writes carries (FITS ``CREATOR``, PNG text, text headers).
SIGNATURE = "galaxy-codae"

PathLike = str | os.PathLike


# ----------------------------------------------------------------------------- atomic files


def fsync_dir(directory: PathLike) -> None:
    """Flush a directory's entries (a rename inside it) to disk; a no-op where unsupported."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _tmp_name(path: Path, suffix: str) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{suffix}")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: PathLike, *, suffix: str = "", mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it to ``path``.

    For writers that take a file name.  ``suffix`` ends the temporary name (``np.save`` adds
    ``.npy`` to a name without it).  On any exception the temporary is removed and ``path``
    is left as it was.  ``mode``: permission bits of the result (None: as the writer created it).
    """
    path = Path(path)
    tmp = _tmp_name(path, suffix)
    try:
        yield tmp
        _fsync_file(tmp)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


@contextmanager
def atomic_paths(paths: Iterable[PathLike], *, suffixes: Iterable[str] | None = None) -> Iterator[list[Path]]:
    """:func:`atomic_path` for several files written together: all renamed into place, or none.

    Yields one temporary path per target (same order); after the block every one is fsynced,
    then each renamed to its target.  On an exception before the renames, every temporary is
    removed and every target left as it was.
    """
    paths = [Path(p) for p in paths]
    suffixes = list(suffixes) if suffixes is not None else [""] * len(paths)
    tmps = [_tmp_name(p, sfx) for p, sfx in zip(paths, suffixes)]
    try:
        yield tmps
        for tmp in tmps:
            _fsync_file(tmp)
        for tmp, path in zip(tmps, paths):
            os.replace(tmp, path)
    except BaseException:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        raise
    for d in {p.parent for p in paths}:
        fsync_dir(d)


@contextmanager
def atomic_open(path: PathLike, mode: str = "wb", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success fsync it and rename it to ``path``.

    ``mode``: ``"wb"`` or ``"w"`` (text; ``kwargs`` go to :func:`open`, e.g. ``newline=""``).
    On any exception the temporary is removed and ``path`` is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f
        f.flush()


def write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=1, sort_keys=True))


def replace_dir(src: PathLike, dest: PathLike, *, may_replace: Callable[[Path], str | None] | None = None) -> None:
    """Move the finished directory ``src`` to ``dest`` (same file system).

    An existing ``dest`` is first renamed aside, then ``src`` renamed into place, then the old
    one deleted, so ``dest`` is at every moment either the old or the new directory.  An existing
    ``dest`` is replaced only when ``may_replace(dest)`` returns None (it returns the reason
    otherwise, raised as :class:`FileExistsError`); without ``may_replace`` it is never replaced.
    """
    src, dest = Path(src), Path(dest)
    old = None
    if dest.exists() or dest.is_symlink():
        why = "it exists" if may_replace is None else may_replace(dest)
        if why is not None:
            raise FileExistsError(f"will not replace {dest}: {why}")
        old = dest.with_name(f".{dest.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.old")
        os.replace(dest, old)
    try:
        os.replace(src, dest)
    except BaseException:
        if old is not None:
            os.replace(old, dest)  # put the old one back
        raise
    fsync_dir(dest.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- ownership


def owner_record(kind: str, entries: Iterable[str]) -> dict[str, Any]:
    """The ownership record of a ``kind`` directory allowed to hold the top-level names ``entries``."""
    return {"kind": kind, "entries": sorted(set(entries) - {OWNER_FILE}), "software": SIGNATURE}


def mark_owned(directory: PathLike, kind: str, *, entries: Iterable[str] | None = None) -> None:
    """Mark ``directory`` as a galaxy-codae ``kind`` (``"run"``, ``"evaluation"``, ...) that --overwrite may replace.

    ``entries``: the top-level names it may hold (default: what it holds now).  A later file
    beside those entries makes it no longer replaceable.
    """
    directory = Path(directory)
    names = os.listdir(directory) if entries is None else entries
    write_json(directory / OWNER_FILE, owner_record(kind, names))


def _owner(directory: Path) -> dict | None:
    try:
        data = json.loads((directory / OWNER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        try:  # a Zarr store: the record is one of its group's attributes
            meta = json.loads((directory / "zarr.json").read_text(encoding="utf-8"))
            data = meta.get("attributes", {}).get(OWNER_KEY)
        except (OSError, ValueError, AttributeError):
            return None
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        return None
    return data


def owned_kind(directory: PathLike) -> str | None:
    """The kind :func:`mark_owned` recorded for ``directory``, or None when it is not marked."""
    data = _owner(Path(directory))
    return None if data is None else data["kind"]


def _fits_creator(head: bytes) -> bool:
    """Whether a FITS file's headers (the bytes given) hold ``CREATOR = 'galaxy-codae...'``."""
    for i in range(0, len(head) - 79, 80):
        card = head[i : i + 80]
        if card.startswith(b"CREATOR ") and card[8:10] == b"= ":
            value = card[10:].strip()
            if value.startswith(b"'" + SIGNATURE.encode()):
                return True
    return False


def _parquet_ours(path: Path) -> bool:
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - 8))
        tail = f.read(8)
        if len(tail) < 8 or tail[4:] != b"PAR1":
            return False
        n = int.from_bytes(tail[:4], "little")
        if n <= 0 or n > size - 8:
            return False
        f.seek(size - 8 - n)
        footer = f.read(n)
    return b"galaxy_codae.header" in footer


def is_ours_file(path: PathLike) -> bool:
    """Whether the regular file ``path`` carries galaxy-codae's signature (see the module docstring)."""
    path = Path(path)
    try:
        if not path.is_file():
            return False
        with open(path, "rb") as f:
            head = f.read(1 << 16)
        if head.startswith(b"SIMPLE  ="):
            return _fits_creator(head)
        if head.startswith(b"PAR1"):
            return _parquet_ours(path)
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            return b"tEXt" in head and SIGNATURE.encode() in head
        if b"\x00" in head:
            return False
        first = b"\n".join(head.splitlines()[:40])
        return SIGNATURE.encode() in first
    except OSError:
        return False


def _resolved(p: PathLike) -> Path | None:
    try:
        return Path(os.path.realpath(p))
    except (OSError, ValueError, RuntimeError):
        return None


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def overwrite_refusal(
    path: PathLike, *, kinds: Iterable[str] | None = None, inputs: Iterable[PathLike] = ()
) -> str | None:
    """Why ``path`` may not be replaced under ``--overwrite``, or None when it may (or does not exist).

    ``kinds``: directory kinds this step may replace (None: any marked kind); ``inputs``: the
    step's input files and folders, which ``path`` must neither be nor contain.
    """
    path = Path(path)
    if path.is_symlink():
        return "it is a symbolic link"
    if not path.exists():
        return None
    target = _resolved(path)
    if target is None:
        return "its location cannot be resolved"
    for inp in inputs:
        r = _resolved(inp)
        if r is not None and _within(r, target):
            return f"it holds an input of this step ({inp})" if r != target else "it is an input of this step"
    if path.is_dir():
        owner = _owner(path)
        if owner is None:
            return f"it is a folder galaxy-codae did not mark as its own (no {OWNER_FILE})"
        if kinds is not None and owner["kind"] not in set(kinds):
            want = " or ".join(sorted(set(kinds)))
            return f"it is a galaxy-codae {owner['kind']}, not a {want}"
        allowed = set(owner.get("entries") or ()) | {OWNER_FILE}
        extra = sorted(set(os.listdir(path)) - allowed)
        if extra:
            return f"it holds {extra[0]!r}, which galaxy-codae did not write"
        return None
    if not path.is_file():
        return "it is not a regular file"
    if not is_ours_file(path):
        return "it is a file galaxy-codae did not write"
    return None


def check_may_replace(
    path: PathLike,
    *,
    kinds: Iterable[str] | None = None,
    inputs: Iterable[PathLike] = (),
    error: type[Exception] = FileExistsError,
) -> None:
    """Raise ``error`` (one line) when :func:`overwrite_refusal` refuses ``path``."""
    why = overwrite_refusal(path, kinds=kinds, inputs=inputs)
    if why is not None:
        raise error(f"--overwrite will not replace {path}: {why}")


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def check_absent(path: PathLike, *, overwrite: bool, error: type[Exception] = FileExistsError) -> None:
    """Raise ``error`` when ``path`` exists (a dangling link too) and ``overwrite`` is not given."""
    if not overwrite and _exists(Path(path)):
        raise error(f"{path} exists; pass --overwrite to replace it")


def check_output(
    path: PathLike,
    *,
    overwrite: bool,
    kinds: Iterable[str] | None = None,
    inputs: Iterable[PathLike] = (),
    may_replace: Callable[[Path], str | None] | None = None,
    error: type[Exception] = FileExistsError,
) -> None:
    """Raise ``error`` (one line) unless a step may write its output ``path`` (a file or a directory).

    A path that does not exist may be written; one that does only with ``overwrite`` and only
    when ``may_replace(path)`` returns None (default: :func:`overwrite_refusal` with ``kinds`` and
    ``inputs``; it returns the reason otherwise).
    """
    path = Path(path)
    check_absent(path, overwrite=overwrite, error=error)
    if not _exists(path):
        return
    why = may_replace(path) if may_replace is not None else overwrite_refusal(path, kinds=kinds, inputs=inputs)
    if why is not None:
        raise error(f"--overwrite will not replace {path}: {why}")


def check_output_file(
    path: PathLike,
    *,
    overwrite: bool,
    what: str = "a file",
    inputs: Iterable[PathLike] = (),
    may_replace: Callable[[Path], str | None] | None = None,
    error: type[Exception] = FileExistsError,
) -> Path:
    """:func:`check_output` for an output file, which must also not be a directory and must have one.

    ``what``: the kind of file, for the message (``"a PNG file"``).  Returns ``path`` as a Path.
    """
    path = Path(path)
    if path.is_dir():
        raise error(f"{path} is a directory, not {what}")
    if not path.parent.is_dir():
        raise error(f"directory {path.parent} does not exist")
    check_output(path, overwrite=overwrite, inputs=inputs, may_replace=may_replace, error=error)
    return path


def remove_owned(
    path: PathLike,
    *,
    kinds: Iterable[str] | None = None,
    inputs: Iterable[PathLike] = (),
    error: type[Exception] = FileExistsError,
) -> None:
    """Delete ``path`` (a file or a directory tree) after :func:`check_may_replace` allows it."""
    path = Path(path)
    check_may_replace(path, kinds=kinds, inputs=inputs, error=error)
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
