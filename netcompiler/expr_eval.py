"""Evaluating the accepted trees of `netcompiler.expr`: with NumPy (`to_numpy`, tests and
references) and TensorFlow (`to_tf`, the `eval` layer's builder). NumPy and TensorFlow are
imported where each runs, so validation imports neither."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

from .activations import np_sigmoid, np_softplus
from .expr import BinOp, Call, Cast, ExprError, Neg, Node, Num, Source
from .expr_functions import COMPARISONS, SAFE_EPS
from .expr_types import _arg_dtypes, _infer, _operand_dtype, _removed

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


def to_numpy(node: Node, sources: Sequence[np.ndarray], aligned: bool = False) -> np.ndarray:
    """Evaluate with NumPy (sources already broadcast-compatible); dtypes as `infer_dtype`.

    With `aligned` (the sources aligned to the broadcast with the feature axis last, as the
    `eval` layer hands them), reductions keep the last axis and the result loses it at the end
    if the expression reduced it with keepdims=False (else as TensorFlow: keepdims literal)."""
    import numpy as np  # lazy: validation does not need NumPy
    dts = [_np_dtype_name(s) for s in sources]
    memo: dict = {}
    _infer(node, dts, memo)
    y = np.asarray(_np_eval(node, sources, memo, None, aligned))
    if aligned and _removed(node):
        y = y[..., 0]
    return y


def _np_dtype_name(x) -> str:
    import numpy as np  # lazy: validation does not need NumPy
    x = np.asarray(x)
    if x.dtype == np.bool_:
        return "bool"
    return "int32" if np.issubdtype(x.dtype, np.integer) else "float32"


def _np_erf(x):
    import numpy as np  # lazy: validation does not need NumPy
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _np_log_softmax(x):
    import numpy as np  # lazy: validation does not need NumPy
    m = np.max(x, axis=-1, keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True))


def _np_eval(node: Node, sources, memo, want: str | None, aligned: bool):
    import numpy as np  # lazy: validation does not need NumPy
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
            inner = _operand_dtype(node, dtype, memo)
            a = ev(node.left, inner)
            b = ev(node.right, inner)
            r = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.true_divide,
                 "**": np.power, "%": np.mod, "//": np.floor_divide}[node.op](a, b)
            return np.asarray(r).astype(npd)
        f = node.func
        if f in ("safe_log", "safe_exp"):
            r = _np_safe(node, ev)
            return np.asarray(r).astype(npd)
        args = [ev(a, w) for a, w in zip(node.args, _arg_dtypes(node, dtype, memo))]
        x = args[0]
        keep = bool(node.option("keepdims")) or aligned
        if f == "sigmoid":
            r = np_sigmoid(x)
        elif f == "tanh":
            r = np.tanh(x)
        elif f == "relu":
            r = np.maximum(x, 0)
        elif f == "elu":
            r = np.where(x > 0, x, np.expm1(x))
        elif f == "gelu":
            if node.option("approximate"):
                r = 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
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
            r = -np_softplus(-x)
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
            r = np_softplus(x)
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
            r = np.exp(_np_log_softmax(x))
        elif f == "log_softmax":
            r = _np_log_softmax(x)
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
    import numpy as np  # lazy: validation does not need NumPy
    (arg,) = node.args
    inner = arg.func if isinstance(arg, Call) else None
    if node.func == "safe_log":
        if inner == "exp":
            return ev(arg.args[0], "float32")
        if inner == "softmax":
            return _np_log_softmax(ev(arg.args[0], "float32"))
        if inner == "sigmoid":
            return -np_softplus(-ev(arg.args[0], "float32"))
        return np.log(np.maximum(ev(arg, "float32"), np.float32(SAFE_EPS)))
    if inner == "log":
        return ev(arg.args[0], "float32")
    if inner == "log_softmax":
        return np.exp(_np_log_softmax(ev(arg.args[0], "float32")))
    if inner == "log_sigmoid":
        return np_sigmoid(ev(arg.args[0], "float32"))
    lo, hi = math.log(SAFE_EPS), math.log(1.0 / SAFE_EPS)
    return np.exp(np.clip(ev(arg, "float32"), np.float32(lo), np.float32(hi)))


def to_tf(node: Node, sources: Sequence, aligned: bool = False):
    """Build the TensorFlow computation (sources already broadcast-compatible tensors);
    `aligned` as in `to_numpy`."""
    import tensorflow as tf

    dts = []
    for s in sources:
        if s.dtype == tf.bool:
            dts.append("bool")
        elif s.dtype.is_integer:
            dts.append("int32")
        else:
            dts.append("float32")
    memo: dict = {}
    _infer(node, dts, memo)
    y = _tf_eval(tf, node, sources, memo, None, aligned)
    if aligned and _removed(node):
        y = tf.squeeze(y, -1)
    return y


def _tf_identity_grad(tf, fn):
    """`fn(x)` whose gradient is the identity (RETURNN's clamps in safe_log/safe_exp)."""
    @tf.custom_gradient
    def f(x):
        def grad(dy):
            return dy
        return fn(x), grad
    return f


def _tf_eval(tf, node: Node, sources, memo, want: str | None, aligned: bool):
    t = memo[id(node)]
    dtype = want or t.dtype
    tfd = {"float32": tf.float32, "int32": tf.int32, "bool": tf.bool}[dtype]

    def conv(x):
        return x if x.dtype == tfd else tf.cast(x, tfd)

    def ev(n, w=None):
        return _tf_eval(tf, n, sources, memo, w, aligned)

    if isinstance(node, Num):
        return tf.constant(node.value, dtype=tfd)
    if isinstance(node, Source):
        return conv(sources[node.index])
    if isinstance(node, Cast):
        return conv(ev(node.operand))
    if isinstance(node, Neg):
        return -ev(node.operand, dtype)
    if isinstance(node, BinOp):
        inner = _operand_dtype(node, dtype, memo)
        a = ev(node.left, inner)
        b = ev(node.right, inner)
        r = {"+": tf.add, "-": tf.subtract, "*": tf.multiply, "/": tf.math.truediv,
             "**": tf.pow, "%": tf.math.floormod, "//": tf.math.floordiv}[node.op](a, b)
        return conv(r)
    f = node.func
    if f in ("safe_log", "safe_exp"):
        return conv(_tf_safe(tf, node, ev))
    args = [ev(a, w) for a, w in zip(node.args, _arg_dtypes(node, dtype, memo))]
    keep = bool(node.option("keepdims")) or aligned
    if f == "gelu":
        return conv(tf.nn.gelu(args[0], approximate=bool(node.option("approximate"))))
    if f.startswith("reduce_"):
        return conv(getattr(tf, f)(args[0], axis=-1, keepdims=keep))
    fn = {
        "sigmoid": tf.sigmoid, "tanh": tf.tanh, "relu": tf.nn.relu, "elu": tf.nn.elu,
        "exp": tf.exp, "log": tf.math.log, "log1p": tf.math.log1p, "expm1": tf.math.expm1,
        "log_sigmoid": tf.math.log_sigmoid, "sqrt": tf.sqrt, "rsqrt": tf.math.rsqrt,
        "reciprocal": tf.math.reciprocal, "erf": tf.math.erf, "abs": tf.abs,
        "square": tf.square, "sign": tf.sign, "floor": tf.floor, "ceil": tf.math.ceil,
        "round": tf.round, "softplus": tf.nn.softplus, "minimum": tf.minimum,
        "maximum": tf.maximum, "clip": lambda x, lo, hi: tf.minimum(tf.maximum(x, lo), hi),
        "less": tf.less, "less_equal": tf.less_equal, "greater": tf.greater,
        "greater_equal": tf.greater_equal, "equal": tf.equal, "not_equal": tf.not_equal,
        "logical_and": tf.logical_and, "logical_or": tf.logical_or,
        "logical_not": tf.logical_not, "where": tf.where, "zeros_like": tf.zeros_like,
        "ones_like": tf.ones_like, "stop_gradient": tf.stop_gradient, "identity": tf.identity,
        "softmax": lambda x: tf.nn.softmax(x, axis=-1),
        "log_softmax": lambda x: tf.nn.log_softmax(x, axis=-1),
    }[f]
    return conv(fn(*args))


def _tf_safe(tf, node: Call, ev):
    (arg,) = node.args
    inner = arg.func if isinstance(arg, Call) else None
    if node.func == "safe_log":
        if inner == "exp":
            return ev(arg.args[0], "float32")
        if inner == "softmax":
            return tf.nn.log_softmax(ev(arg.args[0], "float32"), axis=-1)
        if inner == "sigmoid":
            return tf.math.log_sigmoid(ev(arg.args[0], "float32"))
        clamp = _tf_identity_grad(tf, lambda x: tf.maximum(x, SAFE_EPS))
        return tf.math.log(clamp(ev(arg, "float32")))
    if inner == "log":
        return ev(arg.args[0], "float32")
    if inner == "log_softmax":
        return tf.nn.softmax(ev(arg.args[0], "float32"), axis=-1)
    if inner == "log_sigmoid":
        return tf.sigmoid(ev(arg.args[0], "float32"))
    lo, hi = math.log(SAFE_EPS), math.log(1.0 / SAFE_EPS)
    clip = _tf_identity_grad(tf, lambda x: tf.clip_by_value(x, lo, hi))
    return tf.exp(clip(ev(arg, "float32")))
