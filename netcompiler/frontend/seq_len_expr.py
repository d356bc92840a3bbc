"""`max_seq_len` expressions of `rec` layers, as RETURNN configs write them.

RETURNN evaluates `max_seq_len: "max_len_from('base:encoder') * 3"` as Python. Here the text is
parsed with `ast` into a small tree that allows only:

- int literals (and floats, where the result is floored to an int),
- `max_len_from('REF')` with a string literal layer reference (`base:encoder`, `data:data`,
  written as seen from inside the unit): the longest sequence of that layer's time axis,
- `+ - * //` and `/` (floored), unary minus, parentheses, `int(...)`, `min(a, b)`, `max(a, b)`.

Nothing is executed: `evaluate` walks the tree with a function that gives the length of a
reference (a TensorFlow scalar at run time, or a number in tests).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netcompiler.core.errors import UserError

MAX_LENGTH = 500


class SeqLenExprError(UserError, ValueError):
    """Text that is not a `max_seq_len` expression; the message names the offending part."""


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class MaxLenFrom:
    ref: str


@dataclass(frozen=True)
class BinOp:
    op: str
    left: SeqLenNode
    right: SeqLenNode


@dataclass(frozen=True)
class Neg:
    operand: SeqLenNode


@dataclass(frozen=True)
class Call:
    func: str  # int, min, max
    args: tuple[SeqLenNode, ...]


#: a node of a parsed expression (`parse`)
SeqLenNode = Num | MaxLenFrom | BinOp | Neg | Call
#: the arithmetic `evaluate` uses, by operator (`num`, `+`, ..., `floor`); values are Python
#: numbers or TensorFlow scalars
SeqLenOps = dict[str, Callable[..., Any]]


_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.Div: "/"}


def parse(text: str) -> SeqLenNode:
    """The tree of a `max_seq_len` expression; SeqLenExprError if it is not one."""
    if not isinstance(text, str) or not text.strip():
        raise SeqLenExprError("an empty `max_seq_len` expression")
    if len(text) > MAX_LENGTH:
        raise SeqLenExprError(f"`max_seq_len` expression longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise SeqLenExprError(f"`max_seq_len: {text}` is not an expression: {exc.msg}") from None
    return _convert(tree.body, text)


def _convert(node: ast.expr, text: str) -> SeqLenNode:
    def bad(what: str) -> SeqLenExprError:
        part = ast.get_source_segment(text.strip(), node) or what
        return SeqLenExprError(
            f"`{part}` is not allowed in `max_seq_len`; allowed are numbers, "
            f"max_len_from('LAYER'), + - * // /, int(...), min(...), max(...)"
        )

    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and not isinstance(node.value, bool)
    ):
        return Num(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return BinOp(_OPS[type(node.op)], _convert(node.left, text), _convert(node.right, text))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _convert(node.operand, text)
        return Neg(inner) if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        name = node.func.id
        if name == "max_len_from":
            if len(node.args) != 1 or not (
                isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
            ):
                raise SeqLenExprError(
                    "`max_len_from` takes one layer name as a string literal, "
                    "e.g. max_len_from('base:encoder')"
                )
            return MaxLenFrom(node.args[0].value)
        if name == "int" and len(node.args) == 1:
            return Call("int", (_convert(node.args[0], text),))
        if name in ("min", "max") and len(node.args) >= 2:
            return Call(name, tuple(_convert(a, text) for a in node.args))
    raise bad(type(node).__name__)


def references(tree: SeqLenNode) -> list[str]:
    """The layer references of `max_len_from(...)` in the tree, in order."""
    if isinstance(tree, MaxLenFrom):
        return [tree.ref]
    if isinstance(tree, BinOp):
        return references(tree.left) + references(tree.right)
    if isinstance(tree, Neg):
        return references(tree.operand)
    if isinstance(tree, Call):
        return [r for a in tree.args for r in references(a)]
    return []


def evaluate(tree: SeqLenNode, max_len: Callable[[str], Any], ops: SeqLenOps | None = None) -> Any:
    """The value of the tree; `max_len(ref)` gives a reference's longest sequence. `ops` does
    the arithmetic (default: Python numbers; `tf_ops()` for TensorFlow scalars)."""
    ops = ops or _PY_OPS

    def ev(node: SeqLenNode) -> Any:
        if isinstance(node, Num):
            return ops["num"](node.value)
        if isinstance(node, MaxLenFrom):
            return ops["num"](max_len(node.ref))
        if isinstance(node, Neg):
            return ops["-"](ops["num"](0), ev(node.operand))
        if isinstance(node, BinOp):
            return ops[node.op](ev(node.left), ev(node.right))
        if isinstance(node, Call):
            args = [ev(a) for a in node.args]
            if node.func == "int":
                return ops["floor"](args[0])
            out = args[0]
            for a in args[1:]:
                out = ops[node.func](out, a)
            return out
        raise TypeError(node)

    return ops["floor"](ev(tree))


_PY_OPS: SeqLenOps = {
    "num": float,
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "//": lambda a, b: a // b,
    "min": min,
    "max": max,
    "floor": lambda a: int(a // 1),
}
