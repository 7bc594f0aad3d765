"""The functions of the row-filter language, each with its signature and numpy implementation.

Numeric functions take float64 arrays (or Python floats) and carry NaN; a function that
returns a condition is null (neither true nor false) on rows where a numeric argument is
NaN.  Angles are radians for the trigonometric functions, as in CFITSIO; degrees for the
sky functions (``angsep``, ``near`` with five arguments), which use the haversine formula
(stable at small separations).  The plane regions (``circle``, ``box``, ``ellipse``) are
CFITSIO's: centre, size and angle first, then the two columns, in those columns' units
(pixels for ``x_pix``/``y_pix``); for the sky use ``near(ra, dec, ra0, dec0, r)`` or
``galaxy-codae query --cone``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = ["ALIASES", "FUNCTIONS", "MAX_PATTERN_LENGTH", "Function", "Kind", "check_pattern", "regex_mask"]

Kind = Literal["num", "int", "str", "bool"]

#: longest regular expression accepted by ``regfind``, characters.
MAX_PATTERN_LENGTH = 256


@dataclass(frozen=True)
class Function:
    """One function: accepted argument counts, argument kind, result kind, implementation.

    ``arities``: the accepted numbers of arguments (``None``: two or more).  ``args``:
    ``num`` (every argument a number) or ``str`` (every argument a string).  ``pattern``:
    the last argument is a regular expression given as a string literal.
    """

    arities: tuple[int, ...] | None
    args: Literal["num", "str"]
    returns: Kind
    impl: Callable[..., NDArray]
    signature: str
    pattern: bool = False


def _haversine(ra1: NDArray, dec1: NDArray, ra2: NDArray, dec2: NDArray) -> NDArray:
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


def _near(*args: NDArray) -> NDArray:
    """``near(a, b, tol)``: ``|a - b| <= tol``; ``near(ra, dec, ra0, dec0, r)``: within ``r`` degrees on the sky."""
    if len(args) == 3:
        a, b, tol = args
        return np.abs(np.subtract(a, b)) <= tol
    ra, dec, ra0, dec0, r = args
    return _haversine(ra, dec, ra0, dec0) <= r


def _rotated(xc: NDArray, yc: NDArray, angle_deg: NDArray, x: NDArray, y: NDArray) -> tuple[NDArray, NDArray]:
    """(x, y) relative to (xc, yc), in axes turned by ``angle_deg`` from +x towards +y."""
    t = np.deg2rad(angle_deg)
    dx, dy = np.subtract(x, xc), np.subtract(y, yc)
    return dx * np.cos(t) + dy * np.sin(t), -dx * np.sin(t) + dy * np.cos(t)


def _circle(xc: NDArray, yc: NDArray, r: NDArray, x: NDArray, y: NDArray) -> NDArray:
    return np.subtract(x, xc) ** 2 + np.subtract(y, yc) ** 2 <= np.multiply(r, r)


def _box(xc: NDArray, yc: NDArray, wx: NDArray, wy: NDArray, angle: NDArray, x: NDArray, y: NDArray) -> NDArray:
    u, v = _rotated(xc, yc, angle, x, y)
    return (np.abs(u) <= np.multiply(wx, 0.5)) & (np.abs(v) <= np.multiply(wy, 0.5))


def _ellipse(xc: NDArray, yc: NDArray, rx: NDArray, ry: NDArray, angle: NDArray, x: NDArray, y: NDArray) -> NDArray:
    u, v = _rotated(xc, yc, angle, x, y)
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def _strstr(s: NDArray, sub: NDArray) -> NDArray:
    """1-based position of the first ``sub`` in ``s``, 0 where it does not occur."""
    return np.char.find(np.asarray(s, dtype=str), np.asarray(sub, dtype=str)).astype(np.int64) + 1


def _one(name: str, fn: Callable[[NDArray], NDArray]) -> Function:
    return Function((1,), "num", "num", fn, f"{name}(x)")


# fmt: off
#: every function of the language, by name (lower case).
FUNCTIONS: dict[str, Function] = {
    **{name: _one(name, fn) for name, fn in (
        ("abs", np.abs), ("sqrt", np.sqrt), ("exp", np.exp), ("log", np.log), ("log10", np.log10),
        ("sin", np.sin), ("cos", np.cos), ("tan", np.tan), ("arcsin", np.arcsin), ("arccos", np.arccos),
        ("arctan", np.arctan), ("deg2rad", np.deg2rad), ("rad2deg", np.rad2deg), ("floor", np.floor),
        ("ceil", np.ceil), ("round", np.round))},
    "arctan2": Function((2,), "num", "num", np.arctan2, "arctan2(y, x)"),
    "min": Function(None, "num", "num", _nary(np.minimum), "min(a, b, ...)"),
    "max": Function(None, "num", "num", _nary(np.maximum), "max(a, b, ...)"),
    "angsep": Function((4,), "num", "num", _haversine, "angsep(ra1, dec1, ra2, dec2)"),
    "defnull": Function((2,), "num", "num", lambda x, v: np.where(np.isnan(x), v, x), "defnull(x, value)"),
    "near": Function((3, 5), "num", "bool", _near, "near(a, b, tol) or near(ra, dec, ra0, dec0, r_deg)"),
    "circle": Function((5,), "num", "bool", _circle, "circle(xc, yc, r, X, Y)"),
    "box": Function((7,), "num", "bool", _box, "box(xc, yc, width, height, angle_deg, X, Y)"),
    "ellipse": Function((7,), "num", "bool", _ellipse, "ellipse(xc, yc, rx, ry, angle_deg, X, Y)"),
    "strstr": Function((2,), "str", "int", _strstr, "strstr(s, part)"),
    "regfind": Function((2,), "str", "bool", lambda s, rx: regex_mask(s, rx), "regfind(s, 'regex')", pattern=True),
}
# fmt: on
#: other spellings of some functions.
ALIASES: dict[str, str] = {"asin": "arcsin", "acos": "arccos", "atan": "arctan", "atan2": "arctan2"}


def _nested_repeat(pattern: str) -> bool:
    """Whether a repeated group holds a repeat itself (``(a+)+``): exponential backtracking."""
    stack: list[bool] = []  # per open group: does it contain a quantifier?
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":  # a character class: skip to its end
            j = i + 1 + (pattern[i + 1 : i + 2] == "^")
            j += pattern[j : j + 1] == "]"
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            i = j + 1
            continue
        if c == "(":
            stack.append(False)
        elif c == ")" and stack:
            inner = stack.pop()
            repeated = i + 1 < n and pattern[i + 1] in "*+{"
            if inner and repeated:
                return True
            if stack and (inner or repeated):
                stack[-1] = True
        elif c in "*+?{" and stack:
            stack[-1] = True
        i += 1
    return False


def check_pattern(pattern: str) -> str | None:
    """Why ``pattern`` is refused as a ``regfind`` expression, or None when it compiles and is safe."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"regular expression is {len(pattern)} characters long; the limit is {MAX_PATTERN_LENGTH}"
    try:
        re.compile(pattern)
    except re.error as e:
        return f"bad regular expression ({e})"
    if _nested_repeat(pattern):
        return "regular expression repeats a group that repeats (slow on long strings); simplify it"
    return None


def regex_mask(strings: NDArray | str, pattern: str) -> NDArray:
    """True where ``pattern`` is found in the string (``re.search``), each distinct string tested once."""
    rx = re.compile(pattern)
    arr = np.asarray(strings, dtype=str)
    if arr.ndim == 0:
        return np.bool_(rx.search(str(arr)) is not None)
    uniq, inverse = np.unique(arr, return_inverse=True)
    hits = np.fromiter((rx.search(s) is not None for s in uniq.tolist()), dtype=bool, count=len(uniq))
    return hits[inverse]
