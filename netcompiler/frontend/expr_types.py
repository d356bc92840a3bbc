"""Static types of `netcompiler.frontend.expr` trees, without evaluating them: the dtype of the result
(float32, int32 or bool; mixing is an `ExprError`) and how the result carries the feature axis
(reductions over it keep or remove it). Used by the `eval` layer's shape rule and by the
evaluators (`netcompiler.backend.expr_eval`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from netcompiler.frontend.expr import ExprError
from netcompiler.frontend.expr_functions import (
    ANY_FUNCTIONS,
    COMPARISONS,
    FLOAT_FUNCTIONS,
    LAST_AXIS_FUNCTIONS,
)
from netcompiler.frontend.expr_tree import BinOp, Call, Cast, Neg, Node, Num, Source, children

# -- the feature axis ------------------------------------------------------------------------------

#: how a value carries the broadcast's feature axis: F it has it, B it broadcasts over it (no
#: feature axis of its own), K reduced to size 1 (keepdims=True), - removed (keepdims=False)
FULL, BROADCAST, KEPT, REMOVED = "F", "B", "K", "-"


def infer_feature(node: Node, has_feature: Sequence[bool]) -> str:
    """How the result carries the feature axis (`FULL`, `BROADCAST`, `KEPT`, `REMOVED`), given
    which inputs have one; ExprError for a last-axis function of a value without a feature axis,
    or a value reduced with keepdims=False combined with one that has the feature axis."""
    return _feature(node, has_feature, {})


def _feature(node: Node, has: Sequence[bool], memo: dict[int, str]) -> str:
    key = id(node)
    if key in memo:
        return memo[key]
    if isinstance(node, Num):
        s = BROADCAST
    elif isinstance(node, Source):
        s = FULL if has[node.index] else BROADCAST
    elif isinstance(node, Call) and node.func in LAST_AXIS_FUNCTIONS:
        (arg,) = node.args
        a = _feature(arg, has, memo)
        if a == BROADCAST:
            raise ExprError(
                f"`{node.func}` works over the feature axis (axis=-1), but `{arg}` has none"
            )
        if a == REMOVED:
            raise ExprError(
                f"`{node.func}` works over the feature axis (axis=-1), but `{arg}` "
                f"was already reduced over it"
            )
        if node.func.startswith("reduce_"):
            s = KEPT if node.option("keepdims") else REMOVED
        else:
            s = a
    else:
        operands = children(node)
        states = [_feature(c, has, memo) for c in operands]
        if REMOVED in states:
            for c, st in zip(operands, states):
                if st in (FULL, KEPT):
                    removed = [str(x) for x, t in zip(operands, states) if t == REMOVED][0]
                    raise ExprError(
                        f"`{removed}` was reduced over the feature axis with "
                        f"keepdims=False, but `{c}` has the feature axis; use "
                        f"keepdims=True"
                    )
            s = REMOVED
        elif FULL in states:
            s = FULL
        elif KEPT in states:
            s = KEPT
        else:
            s = BROADCAST
    memo[key] = s
    return s


def removes_last_axis(node: Node) -> bool:
    """Structurally: the result lost the last axis (a reduction with keepdims=False)."""
    if isinstance(node, Call) and node.func.startswith("reduce_"):
        return not node.option("keepdims")
    return any(removes_last_axis(c) for c in children(node))


# -- dtypes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Type:
    dtype: str  # float32 | int32 | bool
    weak: bool = False  # a Python number literal: adopts the other operand's dtype


def infer_dtype(node: Node, input_dtypes: Sequence[str]) -> str:
    """The dtype of the expression's result (float32, int32 or bool); ExprError on mixing."""
    return infer_type(node, input_dtypes, {}).dtype


_CAST_HINT = "cast it with tf.cast(x, tf.float32)"


def infer_type(node: Node, dts: Sequence[str], memo: dict[int, _Type]) -> _Type:
    """The type (dtype, ...) of `node` for sources of dtypes `dts`, memoised in `memo` by node
    id; ExprError for operands whose dtypes do not fit."""
    key = id(node)
    if key in memo:
        return memo[key]
    if isinstance(node, Num):
        t = _Type("int32" if isinstance(node.value, int) else "float32", True)
    elif isinstance(node, Source):
        t = _Type(dts[node.index])
    elif isinstance(node, Cast):
        infer_type(node.operand, dts, memo)
        t = _Type(node.dtype)
    elif isinstance(node, Neg):
        t = infer_type(node.operand, dts, memo)
        if t.dtype == "bool":
            raise ExprError(f"`-` of bool `{node.operand}`; {_CAST_HINT}")
    elif isinstance(node, BinOp) or (
        isinstance(node, Call) and node.func in ("minimum", "maximum", "clip")
    ):
        args = (node.left, node.right) if isinstance(node, BinOp) else node.args
        what = f"`{node.op}`" if isinstance(node, BinOp) else f"`{node.func}`"
        t = _unify([infer_type(a, dts, memo) for a in args], args, what)
        if isinstance(node, BinOp) and node.op == "/" and t.dtype == "int32":
            t = _Type("float32", t.weak)
    elif isinstance(node, Call) and node.func in COMPARISONS:
        args = node.args
        allow_bool = node.func in ("equal", "not_equal")
        _unify([infer_type(a, dts, memo) for a in args], args, f"`{node.func}`", allow_bool)
        t = _Type("bool")
    elif isinstance(node, Call) and node.func.startswith("logical_"):
        for a in node.args:
            at = infer_type(a, dts, memo)
            if at.dtype != "bool":
                raise ExprError(
                    f"`{node.func}` needs bool arguments, but `{a}` is {at.dtype}; "
                    f"compare it, e.g. tf.not_equal(x, 0)"
                )
        t = _Type("bool")
    elif isinstance(node, Call) and node.func == "where":
        cond, x, y = node.args
        ct = infer_type(cond, dts, memo)
        if ct.dtype != "bool":
            raise ExprError(
                f"the condition of `where` must be bool, but `{cond}` is "
                f"{ct.dtype}; compare it, e.g. tf.greater(x, 0)"
            )
        t = _unify([infer_type(x, dts, memo), infer_type(y, dts, memo)], (x, y), "`where`", True)
    elif isinstance(node, Call):
        (arg,) = node.args
        at = infer_type(arg, dts, memo)
        if node.func in ANY_FUNCTIONS:
            t = at
        else:
            if node.func in FLOAT_FUNCTIONS and at.dtype != "float32" and not at.weak:
                raise ExprError(
                    f"`{node.func}` needs a float argument, but `{arg}` is {at.dtype}; {_CAST_HINT}"
                )
            if at.dtype == "bool":
                raise ExprError(f"`{node.func}` of bool `{arg}`; {_CAST_HINT}")
            t = _Type("float32", at.weak) if node.func in FLOAT_FUNCTIONS else at
    else:  # pragma: no cover
        raise ExprError(f"unknown node {node!r}")
    memo[key] = t
    return t


def _unify(types: list[_Type], args: Sequence[Node], what: str, allow_bool: bool = False) -> _Type:
    bools = [t.dtype == "bool" for t in types]
    if any(bools):
        if allow_bool and all(bools):
            return _Type("bool")
        for t, a in zip(types, args):
            if t.dtype == "bool":
                if allow_bool:
                    raise ExprError(f"{what} mixes bool `{a}` with numbers; {_CAST_HINT}")
                raise ExprError(f"{what} of bool `{a}`; {_CAST_HINT}")
    strong = {t.dtype for t in types if not t.weak}
    if len(strong) > 1:
        raise ExprError(
            f"{what} mixes "
            + " and ".join(f"{t.dtype} `{a}`" for t, a in zip(types, args))
            + "; cast with tf.cast(x, tf.float32)"
        )
    if strong:
        (dtype,) = strong
        if dtype == "int32" and any(t.weak and t.dtype == "float32" for t in types):
            raise ExprError(
                f"{what} mixes int32 and a float number: "
                + ", ".join(str(a) for a in args)
                + "; cast with tf.cast(x, tf.float32)"
            )
        return _Type(dtype)
    return _Type("float32" if any(t.dtype == "float32" for t in types) else "int32", True)


# -- dtypes the evaluators give operands ------------------------------------------------------------------------------------


def operand_dtype(node: BinOp | Call, dtype: str, memo: dict[int, _Type]) -> str | None:
    """The dtype the operands of `node` are evaluated in, for a result of `dtype`: float32 for
    `/` and the float functions, the operands' own unified dtype for comparisons and `where`'s
    condition, else the result's dtype."""
    if isinstance(node, BinOp):
        return "float32" if node.op == "/" else dtype
    if node.func in FLOAT_FUNCTIONS:
        return "float32"
    if node.func in COMPARISONS:
        return _unify([memo[id(a)] for a in node.args], node.args, node.func, True).dtype
    return dtype


def arg_dtypes(node: Call, dtype: str, memo: dict[int, _Type]) -> list[str | None]:
    """The dtype each argument of the call `node` is evaluated in, for a result of `dtype`."""
    if node.func == "where":
        return ["bool", dtype, dtype]
    if node.func.startswith("logical_"):
        return ["bool"] * len(node.args)
    return [operand_dtype(node, dtype, memo)] * len(node.args)
