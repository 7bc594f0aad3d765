"""Row filters over a catalogue, modelled on CFITSIO's (ftselect, fitsio).

A filter is parsed by a hand-written tokenizer and a Pratt (precedence-climbing)
parser into a small syntax tree, type-checked against the catalogue's columns, and
evaluated with numpy over whole columns.  A user's string is never given to Python's
``eval``, ``exec``, ``compile`` or ``ast``.

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
- Functions: ``abs sqrt exp log`` (natural) ``log10 sin cos tan arcsin arccos arctan
  arctan2`` (radians, as in CFITSIO; ``deg2rad``/``rad2deg`` convert) ``floor ceil round
  min max`` (two or more arguments, element-wise), ``angsep(ra1, dec1, ra2, dec2)``
  (degrees in and out, as CFITSIO), ``isnull(x)`` and ``defnull(x, value)``.

Semantics
---------
Numbers are computed in float64 (float32 columns are widened exactly); ``/`` is
true division and ``%`` the C remainder (``fmod``, sign of the dividend).  A float
null is NaN (see :mod:`catalogs.schema`); arithmetic and functions carry it, and so
does an invalid operation (``sqrt(-1)``, ``log(0)`` gives -inf, ``0/0`` NaN).
A comparison with a null is null, logic is three-valued (SQL, Kleene), and a row is
selected only when the filter is true, so ``pa_deg != 10`` does not select rows whose
``pa_deg`` is NaN; ``isnull(pa_deg)`` does.  The whole filter must be a condition.

Errors are :class:`pipeline.errors.QueryError` with one line naming the problem and its
1-based character position in the expression.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from astropy.table import Table
from numpy.typing import NDArray

from catalogs.fits_io import open_catalog, write_catalog
from catalogs.schema import LATENT_PREFIX, column_spec
from pipeline.errors import QueryError

__all__ = [
    "MAX_EXPRESSION_LENGTH",
    "MAX_DEPTH",
    "RowFilter",
    "compile_filter",
    "count",
    "format_text",
    "query_catalog",
    "row_mask",
    "select_rows",
    "write_selection",
]

#: longest filter accepted, characters.
MAX_EXPRESSION_LENGTH = 4096
#: deepest nesting of the syntax tree (parentheses, operators, function calls).
MAX_DEPTH = 100

# ---------------------------------------------------------------- tokens


@dataclass(frozen=True)
class _Token:
    kind: str  # NUM STR NAME BOOL ROW OP EOF
    text: str
    pos: int  # 0-based offset in the expression
    value: Any = None


_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FORTRAN = re.compile(r"\.(eq|ne|lt|le|gt|ge|and|or|not)\.", re.IGNORECASE)
_ROW = re.compile(r"#row(?![A-Za-z0-9_])", re.IGNORECASE)
_FORTRAN_OPS = {
    "eq": "==",
    "ne": "!=",
    "lt": "<",
    "le": "<=",
    "gt": ">",
    "ge": ">=",
    "and": "&&",
    "or": "||",
    "not": "!",
}
_WORD_OPS = {"and": "&&", "or": "||", "not": "!"}
_BOOLS = {"true": True, "false": False}
_SYMBOLS = (
    "**",
    "==",
    "!=",
    "<=",
    ">=",
    "&&",
    "||",
    "<",
    ">",
    "+",
    "-",
    "*",
    "/",
    "%",
    "^",
    "!",
    "&",
    "|",
    "(",
    ")",
    ",",
)


def _echo(expression: str, pos: int | None = None, width: int = 70) -> str:
    """The expression quoted on one line, cut to a window around ``pos`` if long."""
    text = re.sub(r"[^ -~]", " ", expression)
    if len(text) > width:
        start = 0 if pos is None else max(0, min(pos - width // 2, len(text) - width))
        text = ("..." if start else "") + text[start : start + width] + ("..." if start + width < len(text) else "")
    return f"'{text}'"


class _Errors:
    """Builds one-line QueryError messages that name the position in the expression."""

    def __init__(self, expression: str) -> None:
        self.expression = expression

    def at(self, message: str, pos: int) -> QueryError:
        return QueryError(f"{message} at position {pos + 1} in {_echo(self.expression, pos)}")


def _tokenize(expression: str, err: _Errors) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(expression)
    while i < n:
        c = expression[i]
        if c in " \t\r\n":
            i += 1
            continue
        if c.isascii() and (c.isdigit() or (c == "." and i + 1 < n and expression[i + 1].isdigit())):
            m = _NUMBER.match(expression, i)
            text = m.group()
            end = m.end()
            if end < n and (expression[end].isalnum() or expression[end] in "_."):
                raise err.at(f"malformed number {expression[i : end + 1]!r}", i)
            is_int = text.isdigit() and int(text) < 2**53
            tokens.append(_Token("NUM", text, i, int(text) if is_int else float(text)))
            i = end
        elif c.isascii() and (c.isalpha() or c == "_"):
            m = _NAME.match(expression, i)
            word = m.group()
            low = word.lower()
            if low in _WORD_OPS:
                tokens.append(_Token("OP", _WORD_OPS[low], i))
            elif low in _BOOLS:
                tokens.append(_Token("BOOL", word, i, _BOOLS[low]))
            else:
                tokens.append(_Token("NAME", word, i))
            i = m.end()
        elif c in "'\"":
            j, chars = i + 1, []
            while True:
                if j >= n:
                    raise err.at("unterminated string", i)
                if expression[j] == c:
                    if j + 1 < n and expression[j + 1] == c:  # doubled quote
                        chars.append(c)
                        j += 2
                        continue
                    break
                chars.append(expression[j])
                j += 1
            tokens.append(_Token("STR", expression[i : j + 1], i, "".join(chars)))
            i = j + 1
        elif c == "." and (m := _FORTRAN.match(expression, i)):
            tokens.append(_Token("OP", _FORTRAN_OPS[m.group(1).lower()], i))
            i = m.end()
        elif c == "#" and (m := _ROW.match(expression, i)):
            tokens.append(_Token("ROW", m.group(), i))
            i = m.end()
        else:
            for sym in _SYMBOLS:
                if expression.startswith(sym, i):
                    tokens.append(_Token("OP", sym, i))
                    i += len(sym)
                    break
            else:
                if c == "=":
                    raise err.at("'=' is not an operator (use '==' to compare)", i)
                shown = repr(c) if c.isprintable() and c.isascii() else f"U+{ord(c):04X}"
                raise err.at(f"unexpected character {shown}", i)
    tokens.append(_Token("EOF", "", n))
    return tokens


# ---------------------------------------------------------------- syntax tree


@dataclass(frozen=True)
class _Node:
    pos: int


@dataclass(frozen=True)
class _Literal(_Node):
    value: Any
    kind: str  # num int str bool


@dataclass(frozen=True)
class _Column(_Node):
    name: str  # as written


@dataclass(frozen=True)
class _RowNumber(_Node):
    pass


@dataclass(frozen=True)
class _Unary(_Node):
    op: str
    operand: _Node


@dataclass(frozen=True)
class _Binary(_Node):
    op: str
    left: _Node
    right: _Node


@dataclass(frozen=True)
class _Logic(_Node):  # a flattened chain of && or ||
    op: str
    operands: tuple[_Node, ...]


@dataclass(frozen=True)
class _Call(_Node):
    name: str  # lower case
    args: tuple[_Node, ...]


def _children(node: _Node) -> tuple[_Node, ...]:
    if isinstance(node, _Unary):
        return (node.operand,)
    if isinstance(node, _Binary):
        return (node.left, node.right)
    if isinstance(node, _Logic):
        return node.operands
    if isinstance(node, _Call):
        return node.args
    return ()


# binding powers, loosest first
_INFIX = {
    "||": 10, "&&": 20, "|": 30, "&": 40,
    "==": 50, "!=": 50, "<": 60, "<=": 60, ">": 60, ">=": 60,
    "+": 70, "-": 70, "*": 80, "/": 80, "%": 80, "**": 90, "^": 90,
}  # fmt: skip
_NOT_BP = 45  # `!` binds looser than comparisons, tighter than & | && ||
_UNARY_BP = 85  # unary minus binds looser than **: -2**2 == -4
_RIGHT_ASSOC = {"**", "^"}


class _Parser:
    def __init__(self, expression: str, err: _Errors) -> None:
        self.err = err
        self.tokens = _tokenize(expression, err)
        self.i = 0
        self.depth = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def parse(self) -> _Node:
        if self.peek().kind == "EOF":
            raise self.err.at("empty expression", 0)
        node = self.expr(0)
        tok = self.peek()
        if tok.kind != "EOF":
            raise self.err.at(f"unexpected {self._describe(tok)}", tok.pos)
        self._check_depth(node)
        return node

    def _check_depth(self, root: _Node) -> None:
        """Bound the tree's depth (long operator chains nest without parentheses); iterative."""
        stack = [(root, 1)]
        while stack:
            node, depth = stack.pop()
            if depth > MAX_DEPTH:
                raise self.err.at(f"expression nested too deeply (more than {MAX_DEPTH} levels)", node.pos)
            stack.extend((child, depth + 1) for child in _children(node))

    @staticmethod
    def _describe(tok: _Token) -> str:
        if tok.kind == "EOF":
            return "end of expression"
        if tok.kind == "NAME":
            return f"name {tok.text!r}"
        return f"{tok.text!r}"

    def expr(self, rbp: int) -> _Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.err.at(f"expression nested too deeply (more than {MAX_DEPTH} levels)", self.peek().pos)
        left = self.nud(self.take())
        while True:
            tok = self.peek()
            bp = _INFIX.get(tok.text, 0) if tok.kind == "OP" else 0
            if bp <= rbp:
                break
            self.take()
            right = self.expr(bp - 1 if tok.text in _RIGHT_ASSOC else bp)
            if tok.text in ("&&", "||"):
                parts = left.operands if isinstance(left, _Logic) and left.op == tok.text else (left,)
                left = _Logic(left.pos if isinstance(left, _Logic) else tok.pos, tok.text, (*parts, right))
            else:
                left = _Binary(tok.pos, tok.text, left, right)
        self.depth -= 1
        return left

    def nud(self, tok: _Token) -> _Node:
        if tok.kind == "NUM":
            return _Literal(tok.pos, tok.value, "int" if isinstance(tok.value, int) else "num")
        if tok.kind == "STR":
            return _Literal(tok.pos, tok.value, "str")
        if tok.kind == "BOOL":
            return _Literal(tok.pos, tok.value, "bool")
        if tok.kind == "ROW":
            return _RowNumber(tok.pos)
        if tok.kind == "NAME":
            if self.peek().text == "(" and self.peek().kind == "OP":
                return self.call(tok)
            return _Column(tok.pos, tok.text)
        if tok.kind == "OP":
            if tok.text == "(":
                node = self.expr(0)
                close = self.take()
                if close.text != ")" or close.kind != "OP":
                    raise self.err.at(f"expected ')' to close '(' at position {tok.pos + 1}, found "
                                      f"{self._describe(close)}", close.pos)  # fmt: skip
                return node
            if tok.text in ("-", "+"):
                return _Unary(tok.pos, tok.text, self.expr(_UNARY_BP))
            if tok.text == "!":
                return _Unary(tok.pos, "!", self.expr(_NOT_BP))
        if tok.kind == "EOF":
            raise self.err.at("expression ends too early", tok.pos)
        raise self.err.at(f"unexpected {self._describe(tok)}", tok.pos)

    def call(self, name: _Token) -> _Node:
        self.take()  # (
        args: list[_Node] = []
        if self.peek().text == ")" and self.peek().kind == "OP":
            self.take()
        else:
            while True:
                args.append(self.expr(0))
                tok = self.take()
                if tok.kind == "OP" and tok.text == ")":
                    break
                if not (tok.kind == "OP" and tok.text == ","):
                    raise self.err.at(f"expected ',' or ')' in call of {name.text!r}, found {self._describe(tok)}",
                                      tok.pos)  # fmt: skip
        return _Call(name.pos, name.text.lower(), tuple(args))


# ---------------------------------------------------------------- functions

_Kind = Literal["num", "int", "str", "bool"]


def _angsep(ra1: NDArray, dec1: NDArray, ra2: NDArray, dec2: NDArray) -> NDArray:
    """Angular separation, degrees in and out (haversine, stable at small angles)."""
    r1, d1, r2, d2 = (np.deg2rad(a) for a in (ra1, dec1, ra2, dec2))
    h = np.sin((d2 - d1) / 2) ** 2 + np.cos(d1) * np.cos(d2) * np.sin((r2 - r1) / 2) ** 2
    return np.rad2deg(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))


def _nary(fn: Callable[[NDArray, NDArray], NDArray]) -> Callable[..., NDArray]:
    def apply(*args: NDArray) -> NDArray:
        out = args[0]
        for a in args[1:]:
            out = fn(out, a)
        return out

    return apply


#: name -> (min args, max args or None, numpy implementation); numeric in, numeric out.
_FUNCTIONS: dict[str, tuple[int, int | None, Callable[..., NDArray]]] = {
    "abs": (1, 1, np.abs),
    "sqrt": (1, 1, np.sqrt),
    "exp": (1, 1, np.exp),
    "log": (1, 1, np.log),
    "log10": (1, 1, np.log10),
    "sin": (1, 1, np.sin),
    "cos": (1, 1, np.cos),
    "tan": (1, 1, np.tan),
    "arcsin": (1, 1, np.arcsin),
    "arccos": (1, 1, np.arccos),
    "arctan": (1, 1, np.arctan),
    "arctan2": (2, 2, np.arctan2),
    "deg2rad": (1, 1, np.deg2rad),
    "rad2deg": (1, 1, np.rad2deg),
    "floor": (1, 1, np.floor),
    "ceil": (1, 1, np.ceil),
    "round": (1, 1, np.round),
    "min": (2, None, _nary(np.minimum)),
    "max": (2, None, _nary(np.maximum)),
    "angsep": (4, 4, _angsep),
    "defnull": (2, 2, lambda x, v: np.where(np.isnan(x), v, x)),
}
_ALIASES = {"asin": "arcsin", "acos": "arccos", "atan": "arctan", "atan2": "arctan2"}
_KIND_WORDS = {"num": "a number", "int": "an integer", "str": "a string", "bool": "a condition"}


# ---------------------------------------------------------------- checking and evaluation


def _column_kind(dtype: np.dtype) -> _Kind | None:
    if dtype.shape:
        return None
    return {"f": "num", "i": "int", "u": "int", "b": "bool", "U": "str", "S": "str"}.get(dtype.kind)


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
                f"({_echo(expression)})"
            )
        self.expression = expression
        self._err = _Errors(expression)
        self._dtypes = dict(dtypes)
        self._lower: dict[str, list[str]] = {}
        for name in self._dtypes:
            self._lower.setdefault(name.lower(), []).append(name)
        self._root = _Parser(expression, self._err).parse()
        self._used: dict[str, None] = {}
        kind = self._check(self._root)
        if kind != "bool":
            raise self._err.at(f"the filter must be a condition (true or false per row), not {_KIND_WORDS[kind]}", 0)
        self.columns: tuple[str, ...] = tuple(self._used)

    # -- names and types

    def _resolve(self, node: _Column) -> str:
        if node.name in self._dtypes:
            return node.name
        matches = self._lower.get(node.name.lower(), [])
        if len(matches) == 1:
            return matches[0]
        hint = difflib.get_close_matches(node.name, list(self._dtypes), n=1)
        more = f" (did you mean {hint[0]!r}?)" if hint else ""
        if node.name.lower() in _FUNCTIONS or node.name.lower() in _ALIASES:
            more = f" ({node.name!r} is a function: call it with parentheses)"
        raise self._err.at(f"unknown column {node.name!r}{more}", node.pos)

    def _check(self, node: _Node) -> _Kind:
        err = self._err
        if isinstance(node, _Literal):
            return node.kind
        if isinstance(node, _RowNumber):
            return "int"
        if isinstance(node, _Column):
            name = self._resolve(node)
            kind = _column_kind(self._dtypes[name])
            if kind is None:
                raise err.at(f"column {name!r} holds arrays or an unsupported type, not one value per row", node.pos)
            self._used[name] = None
            return kind
        if isinstance(node, _Unary):
            kind = self._check(node.operand)
            if node.op == "!":
                if kind != "bool":
                    raise err.at(f"'!' (not) needs a condition, got {_KIND_WORDS[kind]}", node.pos)
                return "bool"
            if kind not in ("num", "int"):
                raise err.at(f"unary {node.op!r} needs a number, got {_KIND_WORDS[kind]}", node.pos)
            return kind
        if isinstance(node, _Logic):
            for operand in node.operands:
                kind = self._check(operand)
                if kind != "bool":
                    word = "and" if node.op == "&&" else "or"
                    raise err.at(f"{node.op!r} ({word}) needs conditions on both sides, got {_KIND_WORDS[kind]}",
                                 operand.pos)  # fmt: skip
            return "bool"
        if isinstance(node, _Binary):
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
        if isinstance(node, _Call):
            name = _ALIASES.get(node.name, node.name)
            if name == "isnull":
                if len(node.args) != 1:
                    raise err.at(f"isnull takes 1 argument, got {len(node.args)}", node.pos)
                self._check(node.args[0])
                return "bool"
            if name not in _FUNCTIONS:
                raise err.at(f"unknown function {node.name!r}", node.pos)
            lo, hi, _ = _FUNCTIONS[name]
            if len(node.args) < lo or (hi is not None and len(node.args) > hi):
                want = f"{lo}" if lo == hi else (f"{lo} or more" if hi is None else f"{lo} to {hi}")
                raise err.at(f"{name} takes {want} argument(s), got {len(node.args)}", node.pos)
            for arg in node.args:
                kind = self._check(arg)
                if kind not in ("num", "int"):
                    raise err.at(f"{name} needs numbers, got {_KIND_WORDS[kind]}", arg.pos)
            return "num"
        raise TypeError(f"unknown node {node!r}")  # pragma: no cover

    # -- evaluation

    def mask(self, columns: Mapping[str, NDArray], nrows: int) -> NDArray[np.bool_]:
        """Boolean selection of ``nrows`` rows: true where the filter is true (not null)."""
        data = {}
        for name in self.columns:
            arr = np.asarray(columns[name])
            if len(arr) != nrows:
                raise ValueError(f"column {name!r} has {len(arr)} rows, expected {nrows}")
            kind = arr.dtype.kind
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

    def evaluate(self, node: _Node) -> tuple[Any, Any]:
        if isinstance(node, _Literal):
            return node.value, None
        if isinstance(node, _RowNumber):
            return np.arange(1, self.nrows + 1, dtype=np.int64), None
        if isinstance(node, _Column):
            return self.data[self.rf._resolve(node)], None
        if isinstance(node, _Unary):
            value, null = self.evaluate(node.operand)
            if node.op == "!":
                return np.logical_not(value), null
            return (np.negative(value) if node.op == "-" else value), None
        if isinstance(node, _Logic):
            return _kleene(node.op, [self.evaluate(operand) for operand in node.operands])
        if isinstance(node, _Binary):
            return self._binary(node)
        if isinstance(node, _Call):
            name = _ALIASES.get(node.name, node.name)
            args = [self.evaluate(a)[0] for a in node.args]
            if name == "isnull":
                return _isnan(args[0]), None
            return _FUNCTIONS[name][2](*[_float(a) for a in args]), None
        raise TypeError(f"unknown node {node!r}")  # pragma: no cover

    def _binary(self, node: _Binary) -> tuple[Any, Any]:
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


def _blank(where: str | None) -> bool:
    return where is None or (isinstance(where, str) and not where.strip())


# ---------------------------------------------------------------- tables and catalogue files


def _table_columns(table: Table | Mapping[str, Any]) -> dict[str, NDArray]:
    if isinstance(table, Table):
        return {name: np.asarray(table[name]) for name in table.colnames}
    return {name: np.asarray(col) for name, col in table.items()}


def row_mask(table: Table | Mapping[str, Any], where: str | None) -> NDArray[np.bool_]:
    """Boolean row selection of an in-memory table (all rows if ``where`` is blank)."""
    cols = _table_columns(table)
    nrows = len(next(iter(cols.values()))) if cols else 0
    if _blank(where):
        return np.ones(nrows, dtype=bool)
    rf = compile_filter(where, {name: arr.dtype for name, arr in cols.items()})
    return rf.mask(cols, nrows)


def _output_columns(requested: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    if requested is None:
        return list(available)
    lower = {}
    for name in available:
        lower.setdefault(name.lower(), []).append(name)
    out = []
    for name in requested:
        name = name.strip()
        if name in available:
            out.append(name)
        elif len(lower.get(name.lower(), [])) == 1:
            out.append(lower[name.lower()][0])
        else:
            hint = difflib.get_close_matches(name, list(available), n=1)
            more = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise QueryError(f"unknown column {name!r} in the column list{more}")
    if not out:
        raise QueryError("the column list is empty")
    if len(set(out)) != len(out):
        raise QueryError("the column list names a column twice")
    return out


def select_rows(table: Table, where: str | None, columns: Sequence[str] | None = None) -> Table:
    """Rows of an in-memory astropy Table matching ``where``, with the chosen columns."""
    names = _output_columns(columns, table.colnames)
    return table[names][row_mask(table, where)]


def query_catalog(path: str | os.PathLike, where: str | None, columns: Sequence[str] | None = None) -> Table:
    """Rows of a catalogue file (FITS or Parquet) matching ``where``, as an astropy Table.

    Reads only the columns the filter needs, then the chosen ``columns`` (default all)
    of the selected rows.  Columns keep units, descriptions and ``meta['ucd']``; the
    table's ``meta`` holds the catalogue's provenance header.
    """
    with open_catalog(path) as cat:
        names = _output_columns(columns, cat.names)
        if _blank(where):
            return cat.read(names)
        rf = compile_filter(where, cat.dtypes)
        rows = np.flatnonzero(rf.mask(cat.read_arrays(rf.columns), cat.nrows))
        return cat.read(names, rows)


def count(path: str | os.PathLike, where: str | None = None) -> int:
    """Number of rows of a catalogue file matching ``where`` (all rows if blank)."""
    with open_catalog(path) as cat:
        if _blank(where):
            return cat.nrows
        rf = compile_filter(where, cat.dtypes)
        return int(np.count_nonzero(rf.mask(cat.read_arrays(rf.columns), cat.nrows)))


def _latent_dim(table: Table) -> int:
    latdim = table.meta.get("LATDIM")
    if isinstance(latdim, (int, np.integer)) and latdim > 0:
        return int(latdim)
    ks = [int(n[len(LATENT_PREFIX) :]) for n in table.colnames if n.startswith(LATENT_PREFIX) and column_spec(n)]
    return max(ks, default=0) + 1


#: header keywords the writer sets itself; a selection does not copy them from its source.
_OWN_KEYWORDS = {"DATE", "CREATOR", "LATDIM", "LONGSTRN"}


def write_selection(
    path: str | os.PathLike,
    out: str | os.PathLike,
    where: str | None = None,
    *,
    columns: Sequence[str] | None = None,
    overwrite: bool = False,
    format: Literal["fits", "parquet"] = "fits",
) -> int:
    """Write the rows of catalogue ``path`` matching ``where`` to ``out``; return the row count.

    The output keeps the schema's units, UCDs and descriptions and the source's
    provenance header, and records the selection (``SELECT``, ``SRCFILE``, ``SRCROWS``).
    An empty selection writes an empty table.
    """
    table = query_catalog(path, where, columns)
    with open_catalog(path) as cat:
        source_rows = cat.nrows
    header: dict[str, Any] = {k: v for k, v in table.meta.items() if k not in _OWN_KEYWORDS}
    header["SELECT"] = ("" if _blank(where) else where, "row filter that made this selection")
    header["SRCFILE"] = (Path(path).name, "catalogue the rows were selected from")
    header["SRCROWS"] = (source_rows, "rows in that catalogue")
    write_catalog(table, out, latent_dim=_latent_dim(table), header=header, overwrite=overwrite, format=format,
                  partial=True)  # fmt: skip
    return len(table)


# ---------------------------------------------------------------- text output


def _printf(name: str, arr: NDArray) -> tuple[int, str]:
    """(minimum width, printf conversion without width) for a column, from the schema's TDISP."""
    if arr.dtype.kind in "US":
        return (max(1, int(np.char.str_len(arr).max())) if arr.size else 1), "s"
    spec = column_spec(name)
    tdisp = spec.tdisp if spec is not None else ("I11" if arr.dtype.kind in "iub" else "G14.7")
    code, width, digits = re.fullmatch(r"([FEGI])(\d+)(?:\.(\d+))?", tdisp).groups()
    if code == "I":
        return int(width), "d"
    return int(width), f".{digits}{ {'F': 'f', 'E': 'E', 'G': 'G'}[code] }"


def format_text(table: Table, chunk: int = 20_000) -> Iterator[str]:
    """Lines of a fixed-width text table: names, units, a rule, then one line per row.

    Numbers use the schema's display formats (TDISP) and are right-aligned; strings are
    left-aligned.  NaN (null) prints as ``nan``.
    """
    names = table.colnames
    units = [str(table[n].unit) if table[n].unit is not None else "" for n in names]
    cells, widths, lefts = [], [], []
    for name, unit in zip(names, units):
        width, conv = _printf(name, np.asarray(table[name]))
        width = max(width, len(name), len(unit))
        left = conv == "s"
        cells.append(f"%-{width}s" if left else f"%{width}{conv}")
        widths.append(width)
        lefts.append(left)

    def pad(text: str, width: int, left: bool) -> str:
        return text.ljust(width) if left else text.rjust(width)

    yield " ".join(pad(n, w, lf) for n, w, lf in zip(names, widths, lefts)).rstrip()
    if any(units):
        yield " ".join(pad(t, w, lf) for t, w, lf in zip(units, widths, lefts)).rstrip()
    yield " ".join("-" * w for w in widths)
    line = " ".join(cells)
    for start in range(0, len(table), chunk):
        columns = [np.asarray(table[n][start : start + chunk]).tolist() for n in names]
        for row in zip(*columns):
            yield (line % row).rstrip()
