"""The row-filter language's syntax: tokenizer, syntax tree and a Pratt (precedence-climbing) parser.

The grammar is described in :mod:`catalogs.rowfilter`.  Parsing builds a small tree of frozen
dataclasses; nothing here evaluates anything, and a user's string is never given to Python's
``eval``, ``exec``, ``compile`` or ``ast``.  Every error is a one-line
:class:`~catalogs.errors.QueryError` naming the 1-based character position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from catalogs.errors import QueryError

__all__ = ["MAX_DEPTH", "Binary", "Call", "ColumnRef", "FilterErrors", "Literal", "Logic", "Node", "RowNumber",
           "Unary", "children", "echo", "parse"]

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


def echo(expression: str, pos: int | None = None, width: int = 70) -> str:
    """The expression quoted on one line, cut to a window around ``pos`` if long."""
    text = re.sub(r"[^ -~]", " ", expression)
    if len(text) > width:
        start = 0 if pos is None else max(0, min(pos - width // 2, len(text) - width))
        text = ("..." if start else "") + text[start : start + width] + ("..." if start + width < len(text) else "")
    return f"'{text}'"


class FilterErrors:
    """Builds one-line QueryError messages that name the position in the expression."""

    def __init__(self, expression: str) -> None:
        self.expression = expression

    def at(self, message: str, pos: int, hint: str = "") -> QueryError:
        """``message at position N in 'expression'``, then ``; hint`` when given (one line)."""
        more = f"; {hint}" if hint else ""
        return QueryError(f"{message} at position {pos + 1} in {echo(self.expression, pos)}{more}")


def _tokenize(expression: str, err: FilterErrors) -> list[_Token]:
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
class Node:
    pos: int


@dataclass(frozen=True)
class Literal(Node):
    value: Any
    kind: str  # num int str bool


@dataclass(frozen=True)
class ColumnRef(Node):
    name: str  # as written


@dataclass(frozen=True)
class RowNumber(Node):
    pass


@dataclass(frozen=True)
class Unary(Node):
    op: str
    operand: Node


@dataclass(frozen=True)
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Logic(Node):  # a flattened chain of && or ||
    op: str
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Call(Node):
    name: str  # lower case
    args: tuple[Node, ...]


def children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Logic):
        return node.operands
    if isinstance(node, Call):
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
    def __init__(self, expression: str, err: FilterErrors) -> None:
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

    def parse(self) -> Node:
        if self.peek().kind == "EOF":
            raise self.err.at("empty expression", 0)
        node = self.expr(0)
        tok = self.peek()
        if tok.kind != "EOF":
            raise self.err.at(f"unexpected {self._describe(tok)}", tok.pos)
        self._check_depth(node)
        return node

    def _check_depth(self, root: Node) -> None:
        """Bound the tree's depth (long operator chains nest without parentheses); iterative."""
        stack = [(root, 1)]
        while stack:
            node, depth = stack.pop()
            if depth > MAX_DEPTH:
                raise self.err.at(f"expression nested too deeply (more than {MAX_DEPTH} levels)", node.pos)
            stack.extend((child, depth + 1) for child in children(node))

    @staticmethod
    def _describe(tok: _Token) -> str:
        if tok.kind == "EOF":
            return "end of expression"
        if tok.kind == "NAME":
            return f"name {tok.text!r}"
        return f"{tok.text!r}"

    def expr(self, rbp: int) -> Node:
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
                parts = left.operands if isinstance(left, Logic) and left.op == tok.text else (left,)
                left = Logic(left.pos if isinstance(left, Logic) else tok.pos, tok.text, (*parts, right))
            else:
                left = Binary(tok.pos, tok.text, left, right)
        self.depth -= 1
        return left

    def nud(self, tok: _Token) -> Node:
        if tok.kind == "NUM":
            return Literal(tok.pos, tok.value, "int" if isinstance(tok.value, int) else "num")
        if tok.kind == "STR":
            return Literal(tok.pos, tok.value, "str")
        if tok.kind == "BOOL":
            return Literal(tok.pos, tok.value, "bool")
        if tok.kind == "ROW":
            return RowNumber(tok.pos)
        if tok.kind == "NAME":
            if self.peek().text == "(" and self.peek().kind == "OP":
                return self.call(tok)
            return ColumnRef(tok.pos, tok.text)
        if tok.kind == "OP":
            if tok.text == "(":
                node = self.expr(0)
                close = self.take()
                if close.text != ")" or close.kind != "OP":
                    raise self.err.at(f"expected ')' to close '(' at position {tok.pos + 1}, found "
                                      f"{self._describe(close)}", close.pos)  # fmt: skip
                return node
            if tok.text in ("-", "+"):
                return Unary(tok.pos, tok.text, self.expr(_UNARY_BP))
            if tok.text == "!":
                return Unary(tok.pos, "!", self.expr(_NOT_BP))
        if tok.kind == "EOF":
            raise self.err.at("expression ends too early", tok.pos)
        raise self.err.at(f"unexpected {self._describe(tok)}", tok.pos)

    def call(self, name: _Token) -> Node:
        self.take()  # (
        args: list[Node] = []
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
        return Call(name.pos, name.text.lower(), tuple(args))



def parse(expression: str, err: FilterErrors) -> Node:
    """The syntax tree of ``expression`` (QueryError naming the position if it is malformed)."""
    return _Parser(expression, err).parse()
