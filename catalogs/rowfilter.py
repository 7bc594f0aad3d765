"""Row filters over a catalogue, modelled on CFITSIO's (ftselect, fitsio).

A filter is parsed by a hand-written tokenizer and a Pratt parser
(:mod:`catalogs.filter_syntax`) into a small syntax tree, type-checked against the
catalogue's columns here, and evaluated with numpy over whole columns.  A user's string is
never given to Python's ``eval``, ``exec``, ``compile`` or ``ast``.

Language
--------
- Column names (case-insensitive when unambiguous), ``#row`` (1-based row number),
  numbers (``3``, ``-2.5``, ``1e-3``), strings in single or double quotes (a doubled
  quote stands for itself), ``true`` and ``false``.
- Operators, loosest first:
  ``||`` ``or`` ``.or.``; ``&&`` ``and`` ``.and.``; ``|``; ``&``;
  ``!`` ``not`` ``.not.`` (applies to a whole comparison: ``!x > 3`` is ``!(x > 3)``);
  ``==`` ``!=`` (``.eq.`` ``.ne.``); ``<`` ``<=`` ``>`` ``>=`` (``.lt.`` ...);
  ``+`` ``-``; ``*`` ``/`` ``%``; unary ``-`` ``+``; ``**`` ``^`` (power, right-associative).
  ``&`` and ``|`` are bitwise on integers (``(flags & 4) == 0``) and logical on conditions.
- Functions (:mod:`catalogs.filter_functions`): ``abs sqrt exp log`` (natural) ``log10 sin
  cos tan arcsin arccos arctan arctan2`` (radians, as in CFITSIO; ``deg2rad``/``rad2deg``
  convert) ``floor ceil round min max`` (two or more arguments, element-wise);
  ``angsep(ra1, dec1, ra2, dec2)`` (degrees in and out, as CFITSIO); ``isnull(x)`` and
  ``defnull(x, value)``; CFITSIO's regions ``near(a, b, tol)``, ``circle(xc, yc, r, X, Y)``,
  ``box(xc, yc, width, height, angle, X, Y)``, ``ellipse(xc, yc, rx, ry, angle, X, Y)``, and on
  the sky ``near(ra, dec, ra0, dec0, r)`` (degrees); for ids ``strstr(s, part)`` (1-based
  position, 0 if absent) and ``regfind(s, 'regex')`` (true where the regular expression is
  found).

Semantics
---------
Numbers are computed in float64 (float32 columns are widened exactly); ``/`` is
true division and ``%`` the C remainder (``fmod``, sign of the dividend).  A float
null is NaN (see :mod:`catalogs.schema`); arithmetic and functions carry it, and so
does an invalid operation (``sqrt(-1)``, ``log(0)`` gives -inf, ``0/0`` NaN).
A comparison with a null is null, logic is three-valued (SQL, Kleene), and a row is
selected only when the filter is true, so ``pa_deg != 10`` does not select rows whose
``pa_deg`` is NaN; ``isnull(pa_deg)`` does (in a galaxy-codae catalogue, exactly the rows
whose orientation is unknown: flag bit 1).  The whole filter must be a condition.

Errors are :class:`catalogs.errors.QueryError` with one line naming the problem and its
1-based character position in the expression; an unknown column or function also lists
what exists, with a did-you-mean.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from catalogs.errors import QueryError
from catalogs.filter_functions import ALIASES, FUNCTIONS, Kind, check_pattern
from catalogs.filter_syntax import (
    MAX_DEPTH,
    Binary,
    Call,
    ColumnRef,
    FilterErrors,
    Literal,
    Logic,
    Node,
    RowNumber,
    Unary,
    echo,
    parse,
)

__all__ = ["MAX_DEPTH", "MAX_EXPRESSION_LENGTH", "RowFilter", "compile_filter", "describe_names", "is_blank"]

#: longest filter accepted, characters.
MAX_EXPRESSION_LENGTH = 4096

_KIND_WORDS = {"num": "a number", "int": "an integer", "str": "a string", "bool": "a condition"}
_SPECIAL = {"isnull": "isnull(x)"}  # functions checked here rather than in the table


def _column_kind(dtype: np.dtype) -> Kind | None:
    if dtype.shape:
        return None
    return {"f": "num", "i": "int", "u": "int", "b": "bool", "U": "str", "S": "str", "T": "str"}.get(dtype.kind)


def describe_names(names: Sequence[str], limit: int = 40) -> str:
    """Names as one line, runs like ``z_0``, ``z_1``, ... ``z_15`` shown as ``z_0 ... z_15``."""
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        out.extend(run if len(run) < 3 else [f"{run[0]} ... {run[-1]}"])
        run.clear()

    for name in names:
        m = re.fullmatch(r"(.*?)(\d+)", name)
        if run and m:
            prev = re.fullmatch(r"(.*?)(\d+)", run[-1])
            if prev and prev.group(1) == m.group(1) and int(m.group(2)) == int(prev.group(2)) + 1:
                run.append(name)
                continue
        flush()
        if m:
            run.append(name)
        else:
            out.append(name)
    flush()
    shown = out[:limit] + (["..."] if len(out) > limit else [])
    return ", ".join(shown)


def _did_you_mean(name: str, candidates: Sequence[str]) -> str:
    hint = difflib.get_close_matches(name, list(candidates), n=1)
    if not hint:
        hint = difflib.get_close_matches(name.lower(), [c.lower() for c in candidates], n=1)
        hint = [c for c in candidates if c.lower() == hint[0]][:1] if hint else []
    return f" (did you mean {hint[0]!r}?)" if hint else ""


class RowFilter:
    """A parsed and type-checked row filter for catalogues with the given column dtypes.

    ``columns`` lists the catalogue columns the filter reads; :meth:`mask` evaluates
    it over arrays of those columns.
    """

    def __init__(self, expression: str, dtypes: Mapping[str, np.dtype]) -> None:
        if not isinstance(expression, str):
            raise QueryError(f"a filter must be a string, got {type(expression).__name__}")
        if len(expression) > MAX_EXPRESSION_LENGTH:
            raise QueryError(
                f"filter is {len(expression)} characters long; the limit is {MAX_EXPRESSION_LENGTH} "
                f"({echo(expression)})"
            )
        self.expression = expression
        self._err = FilterErrors(expression)
        self._dtypes = dict(dtypes)
        self._lower: dict[str, list[str]] = {}
        for name in self._dtypes:
            self._lower.setdefault(name.lower(), []).append(name)
        self._root = parse(expression, self._err)
        self._used: dict[str, None] = {}
        kind = self._check(self._root)
        if kind != "bool":
            raise self._err.at(f"the filter must be a condition (true or false per row), not {_KIND_WORDS[kind]}", 0)
        self.columns: tuple[str, ...] = tuple(self._used)

    # -- names and types

    def _resolve(self, node: ColumnRef) -> str:
        if node.name in self._dtypes:
            return node.name
        matches = self._lower.get(node.name.lower(), [])
        if len(matches) == 1:
            return matches[0]
        more = _did_you_mean(node.name, list(self._dtypes))
        if node.name.lower() in FUNCTIONS or node.name.lower() in ALIASES or node.name.lower() in _SPECIAL:
            more = f" ({node.name!r} is a function: call it with parentheses)"
        raise self._err.at(f"unknown column {node.name!r}{more}", node.pos,
                           f"columns: {describe_names(list(self._dtypes))}")  # fmt: skip

    def _check(self, node: Node) -> Kind:
        err = self._err
        if isinstance(node, Literal):
            return node.kind
        if isinstance(node, RowNumber):
            return "int"
        if isinstance(node, ColumnRef):
            name = self._resolve(node)
            kind = _column_kind(self._dtypes[name])
            if kind is None:
                raise err.at(f"column {name!r} holds arrays or an unsupported type, not one value per row", node.pos)
            self._used[name] = None
            return kind
        if isinstance(node, Unary):
            kind = self._check(node.operand)
            if node.op == "!":
                if kind != "bool":
                    raise err.at(f"'!' (not) needs a condition, got {_KIND_WORDS[kind]}", node.pos)
                return "bool"
            if kind not in ("num", "int"):
                raise err.at(f"unary {node.op!r} needs a number, got {_KIND_WORDS[kind]}", node.pos)
            return kind
        if isinstance(node, Logic):
            for operand in node.operands:
                kind = self._check(operand)
                if kind != "bool":
                    word = "and" if node.op == "&&" else "or"
                    raise err.at(f"{node.op!r} ({word}) needs conditions on both sides, got {_KIND_WORDS[kind]}",
                                 operand.pos)  # fmt: skip
            return "bool"
        if isinstance(node, Binary):
            return self._check_binary(node)
        if isinstance(node, Call):
            return self._check_call(node)
        raise TypeError(f"unknown node {node!r}")  # pragma: no cover

    def _check_binary(self, node: Binary) -> Kind:
        err = self._err
        lk, rk = self._check(node.left), self._check(node.right)
        op = node.op
        numeric = lk in ("num", "int") and rk in ("num", "int")
        if op in ("&", "|"):
            if lk == rk == "int":
                return "int"
            if lk == rk == "bool":
                return "bool"
            raise err.at(f"{op!r} needs two integers (bitwise) or two conditions, got "
                         f"{_KIND_WORDS[lk]} and {_KIND_WORDS[rk]}", node.pos)  # fmt: skip
        if op in ("==", "!=", "<", "<=", ">", ">="):
            if numeric or (lk == rk == "str") or (lk == rk == "bool" and op in ("==", "!=")):
                return "bool"
            raise err.at(f"cannot compare {_KIND_WORDS[lk]} with {_KIND_WORDS[rk]} using {op!r}", node.pos)
        if not numeric:
            raise err.at(f"{op!r} needs numbers, got {_KIND_WORDS[lk]} and {_KIND_WORDS[rk]}", node.pos)
        return "num"

    def _check_call(self, node: Call) -> Kind:
        err = self._err
        name = ALIASES.get(node.name, node.name)
        if name == "isnull":
            if len(node.args) != 1:
                raise err.at(f"isnull takes 1 argument, got {len(node.args)}", node.pos)
            self._check(node.args[0])
            return "bool"
        if name not in FUNCTIONS:
            known = sorted([*FUNCTIONS, *_SPECIAL])
            more = _did_you_mean(node.name, known)
            if node.name in self._dtypes or len(self._lower.get(node.name.lower(), [])) == 1:
                more = f" ({node.name!r} is a column, not a function)"
            raise err.at(f"unknown function {node.name!r}{more}", node.pos, f"functions: {', '.join(known)}")
        fn = FUNCTIONS[name]
        n = len(node.args)
        if (fn.arities is None and n < 2) or (fn.arities is not None and n not in fn.arities):
            want = "2 or more" if fn.arities is None else " or ".join(str(a) for a in fn.arities)
            raise err.at(f"{name} takes {want} argument(s), got {n}", node.pos, fn.signature)
        for arg in node.args:
            kind = self._check(arg)
            ok = kind in ("num", "int") if fn.args == "num" else kind == "str"
            if not ok:
                want = "numbers" if fn.args == "num" else "strings"
                raise err.at(f"{name} needs {want}, got {_KIND_WORDS[kind]}", arg.pos, fn.signature)
        if fn.pattern:
            last = node.args[-1]
            if not (isinstance(last, Literal) and last.kind == "str"):
                raise err.at(f"{name} needs its regular expression as a quoted string", last.pos, fn.signature)
            why = check_pattern(last.value)
            if why is not None:
                raise err.at(why, last.pos)
        return fn.returns

    # -- evaluation

    def mask(self, columns: Mapping[str, NDArray], nrows: int) -> NDArray[np.bool_]:
        """Boolean selection of ``nrows`` rows: true where the filter is true (not null)."""
        data = {}
        for name in self.columns:
            arr = np.asarray(columns[name])
            if len(arr) != nrows:
                raise ValueError(f"column {name!r} has {len(arr)} rows, expected {nrows}")
            kind = arr.dtype.kind
            if kind == "T":  # numpy 2 variable-width strings (zarr 3): fixed-width unicode
                arr = arr.astype(str)
            data[name] = arr.astype(np.float64) if kind == "f" else arr.astype(np.int64) if kind in "iu" else arr
        with np.errstate(all="ignore"):
            value, null = _Evaluator(self, data, nrows).evaluate(self._root)
        selected = value if null is None else value & ~null
        return np.array(np.broadcast_to(selected, (nrows,)), dtype=bool)


_COMPARE = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal, ">": np.greater,
            ">=": np.greater_equal}  # fmt: skip
_ARITHMETIC = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.true_divide, "%": np.fmod,
               "**": np.power, "^": np.power}  # fmt: skip


class _Evaluator:
    """Evaluates a checked tree over columns: each node gives (values, null mask or None).

    Numbers carry their nulls as NaN (mask None); conditions carry an explicit mask.
    """

    def __init__(self, rf: RowFilter, data: Mapping[str, NDArray], nrows: int) -> None:
        self.rf, self.data, self.nrows = rf, data, nrows

    def evaluate(self, node: Node) -> tuple[Any, Any]:
        if isinstance(node, Literal):
            return node.value, None
        if isinstance(node, RowNumber):
            return np.arange(1, self.nrows + 1, dtype=np.int64), None
        if isinstance(node, ColumnRef):
            return self.data[self.rf._resolve(node)], None
        if isinstance(node, Unary):
            value, null = self.evaluate(node.operand)
            if node.op == "!":
                return np.logical_not(value), null
            return (np.negative(value) if node.op == "-" else value), None
        if isinstance(node, Logic):
            return _kleene(node.op, [self.evaluate(operand) for operand in node.operands])
        if isinstance(node, Binary):
            return self._binary(node)
        if isinstance(node, Call):
            return self._call(node)
        raise TypeError(f"unknown node {node!r}")  # pragma: no cover

    def _call(self, node: Call) -> tuple[Any, Any]:
        name = ALIASES.get(node.name, node.name)
        args = [self.evaluate(a)[0] for a in node.args]
        if name == "isnull":
            return _isnan(args[0]), None
        fn = FUNCTIONS[name]
        if fn.args == "str":
            return fn.impl(*args), None
        floats = [_float(a) for a in args]
        value = fn.impl(*floats)
        if fn.returns != "bool":
            return value, None
        null = None
        for a in floats:  # a region test with a NaN coordinate is null, not false
            null = _or_none(null, _nan_mask(a))
        return value, null

    def _binary(self, node: Binary) -> tuple[Any, Any]:
        (a, na), (b, nb) = self.evaluate(node.left), self.evaluate(node.right)
        op = node.op
        if op in ("&", "|"):
            if _is_bool(a) and _is_bool(b):  # logical, with the rules of && and ||
                return _kleene("&&" if op == "&" else "||", [(a, na), (b, nb)])
            return (np.bitwise_and(a, b) if op == "&" else np.bitwise_or(a, b)), None
        if op in _COMPARE:
            if _is_str(a) or _is_str(b):
                return _COMPARE[op](np.asarray(a, dtype=str), np.asarray(b, dtype=str)), None
            null = _or_none(_or_none(na, nb), _or_none(_nan_mask(a), _nan_mask(b)))
            return _COMPARE[op](a, b), null
        return _ARITHMETIC[op](_float(a), _float(b)), None


def _kleene(op: str, operands: list[tuple[Any, Any]]) -> tuple[Any, Any]:
    """Three-valued && or || over (truth, null mask or None) pairs."""
    value, null = operands[0]
    for v2, n2 in operands[1:]:
        t1 = value if null is None else value & ~null
        t2 = v2 if n2 is None else v2 & ~n2
        if op == "&&":
            f1 = ~value if null is None else ~value & ~null
            f2 = ~v2 if n2 is None else ~v2 & ~n2
            value = t1 & t2
            null = None if null is None and n2 is None else ~(value | f1 | f2)
        else:
            value = t1 | t2
            either = _or_none(null, n2)
            null = None if either is None else either & ~value
    return value, null


def _is_bool(a: Any) -> bool:
    return isinstance(a, (bool, np.bool_)) or (isinstance(a, np.ndarray) and a.dtype == bool)


def _is_str(a: Any) -> bool:
    return isinstance(a, str) or (isinstance(a, np.ndarray) and a.dtype.kind in "US")


def _float(a: Any) -> Any:
    """Numbers as float64 (arrays) or float (scalars)."""
    if isinstance(a, np.ndarray):
        return a if a.dtype.kind == "f" else a.astype(np.float64)
    return float(a)


def _nan_mask(a: Any) -> Any:
    if isinstance(a, np.ndarray):
        return np.isnan(a) if a.dtype.kind == "f" else None
    if isinstance(a, float) and np.isnan(a):
        return True
    return None


def _isnan(a: Any) -> Any:
    if isinstance(a, np.ndarray):
        return np.isnan(a) if a.dtype.kind == "f" else np.zeros(a.shape, dtype=bool)
    return bool(isinstance(a, float) and np.isnan(a))


def _or_none(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return a | b


def compile_filter(where: str, dtypes: Mapping[str, np.dtype]) -> RowFilter:
    """Parse and type-check ``where`` for columns with these dtypes (QueryError if invalid)."""
    return RowFilter(where, dtypes)


def is_blank(where: str | None) -> bool:
    """Whether a filter selects every row (None or only white space)."""
    return where is None or (isinstance(where, str) and not where.strip())
