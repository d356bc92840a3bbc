"""The accepted tree of an `eval` expression: the small `Node` values that
`netcompiler.frontend.expr.parse_expression` turns an expression into (numbers, `source(i)`,
operators, function calls, casts), printable as expressions, and the walks over them
(`children`, `sources_used`). `netcompiler.frontend.expr_types` types them and
`netcompiler.backend.expr_eval` evaluates them with TensorFlow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class Node:
    """An accepted expression, one of the node types below."""


@dataclass(frozen=True)
class Num(Node):
    value: int | float

    def __str__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True)
class Source(Node):
    index: int

    def __str__(self) -> str:
        return f"source({self.index})"


@dataclass(frozen=True)
class BinOp(Node):
    op: str  # + - * / ** % //
    left: Node
    right: Node

    def __str__(self) -> str:
        return f"({self.left} {self.op} {self.right})"


@dataclass(frozen=True)
class Neg(Node):
    operand: Node

    def __str__(self) -> str:
        return f"(-{self.operand})"


@dataclass(frozen=True)
class Call(Node):
    """A function: element-wise (sigmoid, minimum, clip, less, logical_and, where, ...) or over
    the last axis (softmax, reduce_sum, ...); `options` are its literal parameters (axis,
    keepdims, approximate) as (name, value) pairs."""

    func: str  # canonical name
    args: tuple[Node, ...]
    options: tuple[tuple[str, object], ...] = ()

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)

    def __str__(self) -> str:
        parts = [str(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.options]
        return f"{self.func}({', '.join(parts)})"


@dataclass(frozen=True)
class Cast(Node):
    operand: Node
    dtype: str  # float32 | int32 | bool

    def __str__(self) -> str:
        return f"cast({self.operand}, {self.dtype})"


def sources_used(node: Node) -> set[int]:
    if isinstance(node, Source):
        return {node.index}
    out: set[int] = set()
    for child in children(node):
        out |= sources_used(child)
    return out


def children(node: Node) -> tuple[Node, ...]:
    """The direct operands of an expression node (none for a number or a source)."""
    if isinstance(node, BinOp):
        return (node.left, node.right)
    if isinstance(node, (Neg, Cast)):
        return (node.operand,)
    if isinstance(node, Call):
        return node.args
    return ()
