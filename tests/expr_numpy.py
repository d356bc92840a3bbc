"""The tests' NumPy evaluator of `eval` expressions: the oracle that `netcompiler.backend.expr_eval.to_tf`
(the `eval` layer's TensorFlow builder) is tested against (tests/frontend/test_expr.py).

It evaluates the trees `netcompiler.frontend.expr.parse_expression` accepts, with the dtypes
`netcompiler.frontend.expr_types` infers; the functions themselves are NumPy's (activations from
`numpy_reference.ACTIVATIONS`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from netcompiler.frontend.expr import ExprError
from netcompiler.frontend.expr_functions import COMPARISONS, SAFE_EPS
from netcompiler.frontend.expr_tree import BinOp, Call, Cast, Neg, Node, Num, Source
from netcompiler.frontend.expr_types import arg_dtypes, infer_type, operand_dtype, removes_last_axis

from numpy_reference import ACTIVATIONS as _ACT


def to_numpy(node: Node, sources: Sequence[np.ndarray], aligned: bool = False) -> np.ndarray:
    """Evaluate with NumPy (sources already broadcast-compatible); dtypes as `infer_dtype`.

    With `aligned` (the sources aligned to the broadcast with the feature axis last, as the
    `eval` layer hands them), reductions keep the last axis and the result loses it at the end
    if the expression reduced it with keepdims=False (else as TensorFlow: keepdims literal)."""
    dts = [_np_dtype_name(s) for s in sources]
    memo: dict = {}
    infer_type(node, dts, memo)
    y = np.asarray(_np_eval(node, sources, memo, None, aligned))
    if aligned and removes_last_axis(node):
        y = y[..., 0]
    return y


def _np_dtype_name(x) -> str:
    x = np.asarray(x)
    if x.dtype == np.bool_:
        return "bool"
    return "int32" if np.issubdtype(x.dtype, np.integer) else "float32"


def _np_erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _np_eval(node: Node, sources, memo, want: str | None, aligned: bool):
    t = memo[id(node)]
    dtype = want or t.dtype
    npd = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}[dtype]
    if isinstance(node, Num):
        return np.asarray(node.value, dtype=npd)
    if isinstance(node, Source):
        return np.asarray(sources[node.index]).astype(npd)

    def ev(n, w=None):
        return _np_eval(n, sources, memo, w, aligned)

    with np.errstate(all="ignore"):
        if isinstance(node, Cast):
            return np.asarray(ev(node.operand)).astype(npd)
        if isinstance(node, Neg):
            return -ev(node.operand, dtype)
        if isinstance(node, BinOp):
            inner = operand_dtype(node, dtype, memo)
            a = ev(node.left, inner)
            b = ev(node.right, inner)
            r = {
                "+": np.add,
                "-": np.subtract,
                "*": np.multiply,
                "/": np.true_divide,
                "**": np.power,
                "%": np.mod,
                "//": np.floor_divide,
            }[node.op](a, b)
            return np.asarray(r).astype(npd)
        f = node.func
        if f in ("safe_log", "safe_exp"):
            r = _np_safe(node, ev)
            return np.asarray(r).astype(npd)
        args = [ev(a, w) for a, w in zip(node.args, arg_dtypes(node, dtype, memo))]
        x = args[0]
        keep = bool(node.option("keepdims")) or aligned
        if f == "sigmoid":
            r = _ACT["sigmoid"](x)
        elif f == "tanh":
            r = np.tanh(x)
        elif f == "relu":
            r = np.maximum(x, 0)
        elif f == "elu":
            r = np.where(x > 0, x, np.expm1(x))
        elif f == "gelu":
            if node.option("approximate"):
                r = _ACT["gelu"](x)
            else:
                r = 0.5 * x * (1.0 + _np_erf(x / math.sqrt(2.0)))
        elif f == "exp":
            r = np.exp(x)
        elif f == "log":
            r = np.log(x)
        elif f == "log1p":
            r = np.log1p(x)
        elif f == "expm1":
            r = np.expm1(x)
        elif f == "log_sigmoid":
            r = -_ACT["softplus"](-x)
        elif f == "sqrt":
            r = np.sqrt(x)
        elif f == "rsqrt":
            r = 1.0 / np.sqrt(x)
        elif f == "reciprocal":
            r = 1.0 / x
        elif f == "erf":
            r = _np_erf(x)
        elif f == "abs":
            r = np.abs(x)
        elif f == "square":
            r = x * x
        elif f == "sign":
            r = np.sign(x)
        elif f == "floor":
            r = np.floor(x)
        elif f == "ceil":
            r = np.ceil(x)
        elif f == "round":
            r = np.round(x)  # half to even, as tf.round
        elif f == "softplus":
            r = _ACT["softplus"](x)
        elif f == "minimum":
            r = np.minimum(x, args[1])
        elif f == "maximum":
            r = np.maximum(x, args[1])
        elif f == "clip":
            r = np.minimum(np.maximum(x, args[1]), args[2])
        elif f in COMPARISONS:
            r = getattr(np, f)(x, args[1])
        elif f == "logical_and":
            r = np.logical_and(x, args[1])
        elif f == "logical_or":
            r = np.logical_or(x, args[1])
        elif f == "logical_not":
            r = np.logical_not(x)
        elif f == "where":
            r = np.where(x, args[1], args[2])
        elif f == "zeros_like":
            r = np.zeros_like(x)
        elif f == "ones_like":
            r = np.ones_like(x)
        elif f in ("stop_gradient", "identity"):
            r = x
        elif f == "softmax":
            r = np.exp(_ACT["log_softmax"](x))
        elif f == "log_softmax":
            r = _ACT["log_softmax"](x)
        elif f == "reduce_sum":
            r = np.sum(x, axis=-1, keepdims=keep)
        elif f == "reduce_mean":
            if dtype == "int32":  # as TensorFlow: integer sum / count, truncated
                r = np.fix(np.sum(x.astype(np.int64), axis=-1, keepdims=keep) / x.shape[-1])
            else:
                r = np.mean(x, axis=-1, keepdims=keep)
        elif f == "reduce_max":
            r = np.max(x, axis=-1, keepdims=keep)
        elif f == "reduce_min":
            r = np.min(x, axis=-1, keepdims=keep)
        elif f == "reduce_logsumexp":
            m = np.max(x, axis=-1, keepdims=True)
            r = m + np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True))
            if not keep:
                r = r[..., 0]
        else:  # pragma: no cover
            raise ExprError(f"unknown function {f}")
        return np.asarray(r).astype(npd)


def _np_safe(node: Call, ev):
    (arg,) = node.args
    inner = arg.func if isinstance(arg, Call) else None
    if node.func == "safe_log":
        if inner == "exp":
            return ev(arg.args[0], "float32")
        if inner == "softmax":
            return _ACT["log_softmax"](ev(arg.args[0], "float32"))
        if inner == "sigmoid":
            return -_ACT["softplus"](-ev(arg.args[0], "float32"))
        return np.log(np.maximum(ev(arg, "float32"), np.float32(SAFE_EPS)))
    if inner == "log":
        return ev(arg.args[0], "float32")
    if inner == "log_softmax":
        return np.exp(_ACT["log_softmax"](ev(arg.args[0], "float32")))
    if inner == "log_sigmoid":
        return _ACT["sigmoid"](ev(arg.args[0], "float32"))
    lo, hi = math.log(SAFE_EPS), math.log(1.0 / SAFE_EPS)
    return np.exp(np.clip(ev(arg, "float32"), np.float32(lo), np.float32(hi)))
