"""Evaluating the accepted trees of `netcompiler.frontend.expr` with TensorFlow (`to_tf`, the `eval`
layer's builder). TensorFlow is imported where it runs, so validation does not import it. (The
tests' NumPy evaluator of the same trees, their oracle, is `tests/expr_numpy.py`.)"""

from __future__ import annotations

import math
from collections.abc import Sequence

from netcompiler.frontend.expr_functions import SAFE_EPS
from netcompiler.frontend.expr_tree import BinOp, Call, Cast, Neg, Node, Num, Source
from netcompiler.frontend.expr_types import arg_dtypes, infer_type, operand_dtype, removes_last_axis


def to_tf(node: Node, sources: Sequence, aligned: bool = False):
    """Build the TensorFlow computation (sources already broadcast-compatible tensors).

    With `aligned` (the sources aligned to the broadcast with the feature axis last, as the
    `eval` layer hands them), reductions keep the last axis and the result loses it at the end
    if the expression reduced it with keepdims=False (else: keepdims literal)."""
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
    infer_type(node, dts, memo)
    y = _tf_eval(tf, node, sources, memo, None, aligned)
    if aligned and removes_last_axis(node):
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
        inner = operand_dtype(node, dtype, memo)
        a = ev(node.left, inner)
        b = ev(node.right, inner)
        return conv(_tf_operator(tf, node.op)(a, b))
    f = node.func
    if f in ("safe_log", "safe_exp"):
        return conv(_tf_safe(tf, node, ev))
    args = [ev(a, w) for a, w in zip(node.args, arg_dtypes(node, dtype, memo))]
    keep = bool(node.option("keepdims")) or aligned
    if f == "gelu":
        return conv(tf.nn.gelu(args[0], approximate=bool(node.option("approximate"))))
    if f.startswith("reduce_"):
        return conv(getattr(tf, f)(args[0], axis=-1, keepdims=keep))
    return conv(_tf_function(tf, f)(*args))


def _tf_operator(tf, op: str):
    """The TensorFlow function of a `BinOp` operator."""
    return {
        "+": tf.add,
        "-": tf.subtract,
        "*": tf.multiply,
        "/": tf.math.truediv,
        "**": tf.pow,
        "%": tf.math.floormod,
        "//": tf.math.floordiv,
    }[op]


def _tf_function(tf, func: str):
    """The TensorFlow function of a `Call`'s canonical name (the element-wise functions and the
    softmaxes; `_tf_eval` handles gelu, the reductions and safe_log/safe_exp itself)."""
    return {
        "sigmoid": tf.sigmoid,
        "tanh": tf.tanh,
        "relu": tf.nn.relu,
        "elu": tf.nn.elu,
        "exp": tf.exp,
        "log": tf.math.log,
        "log1p": tf.math.log1p,
        "expm1": tf.math.expm1,
        "log_sigmoid": tf.math.log_sigmoid,
        "sqrt": tf.sqrt,
        "rsqrt": tf.math.rsqrt,
        "reciprocal": tf.math.reciprocal,
        "erf": tf.math.erf,
        "abs": tf.abs,
        "square": tf.square,
        "sign": tf.sign,
        "floor": tf.floor,
        "ceil": tf.math.ceil,
        "round": tf.round,
        "softplus": tf.nn.softplus,
        "minimum": tf.minimum,
        "maximum": tf.maximum,
        "clip": lambda x, lo, hi: tf.minimum(tf.maximum(x, lo), hi),
        "less": tf.less,
        "less_equal": tf.less_equal,
        "greater": tf.greater,
        "greater_equal": tf.greater_equal,
        "equal": tf.equal,
        "not_equal": tf.not_equal,
        "logical_and": tf.logical_and,
        "logical_or": tf.logical_or,
        "logical_not": tf.logical_not,
        "where": tf.where,
        "zeros_like": tf.zeros_like,
        "ones_like": tf.ones_like,
        "stop_gradient": tf.stop_gradient,
        "identity": tf.identity,
        "softmax": lambda x: tf.nn.softmax(x, axis=-1),
        "log_softmax": lambda x: tf.nn.log_softmax(x, axis=-1),
    }[func]


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
