"""Element-wise activation functions by name, as RETURNN configs write them.

A name is a base function, optionally scaled: `tanh`, `2*sigmoid`, `0.5*relu`. `None`, `none`,
`identity` and `linear` mean no activation. `softmax` and `log_softmax` work over the last
(feature) axis.

`parse_activation` and `ACTIVATIONS` need no TensorFlow (the shape rules use them);
`apply_activation` imports TensorFlow when called. (The tests' NumPy references of the same
functions are in `tests/numpy_reference.py`.)

Definitions where libraries differ: `gelu` is the tanh approximation
`0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))` (RETURNN's `gelu`), `leaky_relu` has slope 0.2 (TensorFlow's default), `hard_sigmoid` is
`relu6(x + 3) / 6` (Keras 3), `swish`/`silu` is `x * sigmoid(x)`.
"""
from __future__ import annotations

import math
import re

#: activation names without scale; the schema pattern of `activation` lists the same names.
ACTIVATIONS = (
    "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "swish", "silu", "tanh",
    "sigmoid", "log_sigmoid", "hard_sigmoid", "softmax", "log_softmax", "softplus", "softsign",
    "abs", "square", "sqrt", "exp", "log", "identity", "linear", "none",
)
IDENTITY = ("identity", "linear", "none")
#: activations that normalise over the feature axis (not element-wise)
OVER_FEATURES = ("softmax", "log_softmax")

_SCALED = re.compile(r"^\s*(?:([0-9]+(?:\.[0-9]+)?)\s*\*\s*)?([a-z_0-9]+)\s*$")


def parse_activation(name: str | None) -> tuple[float, str]:
    """`"2*sigmoid"` -> `(2.0, "sigmoid")`; `None` -> `(1.0, "identity")`. ValueError if unknown."""
    if name is None:
        return 1.0, "identity"
    m = _SCALED.match(str(name))
    if not m or m.group(2) not in ACTIVATIONS:
        raise ValueError(f"unknown activation `{name}` (known: {', '.join(ACTIVATIONS)}, "
                         f"optionally scaled as `2*sigmoid`)")
    scale = float(m.group(1)) if m.group(1) else 1.0
    return scale, m.group(2)


def is_identity(name: str | None) -> bool:
    scale, base = parse_activation(name)
    return base in IDENTITY and scale == 1.0


def apply_activation(name: str | None, x):
    """The activation `name` applied to the tensor `x` (TensorFlow)."""
    import tensorflow as tf

    scale, base = parse_activation(name)
    if base in IDENTITY:
        y = x
    elif base == "relu":
        y = tf.nn.relu(x)
    elif base == "relu6":
        y = tf.nn.relu6(x)
    elif base == "leaky_relu":
        y = tf.nn.leaky_relu(x, alpha=0.2)
    elif base == "elu":
        y = tf.nn.elu(x)
    elif base == "selu":
        y = tf.nn.selu(x)
    elif base == "gelu":
        y = 0.5 * x * (1.0 + tf.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))
    elif base in ("swish", "silu"):
        y = x * tf.sigmoid(x)
    elif base == "tanh":
        y = tf.tanh(x)
    elif base == "sigmoid":
        y = tf.sigmoid(x)
    elif base == "log_sigmoid":
        y = tf.math.log_sigmoid(x)
    elif base == "hard_sigmoid":
        y = tf.nn.relu6(x + 3.0) / 6.0
    elif base == "softmax":
        y = tf.nn.softmax(x, axis=-1)
    elif base == "log_softmax":
        y = tf.nn.log_softmax(x, axis=-1)
    elif base == "softplus":
        y = tf.nn.softplus(x)
    elif base == "softsign":
        y = tf.nn.softsign(x)
    elif base == "abs":
        y = tf.abs(x)
    elif base == "square":
        y = tf.square(x)
    elif base == "sqrt":
        y = tf.sqrt(x)
    elif base == "exp":
        y = tf.exp(x)
    elif base == "log":
        y = tf.math.log(x)
    else:  # pragma: no cover - parse_activation rejects it
        raise ValueError(base)
    if scale != 1.0:
        y = tf.cast(scale, y.dtype) * y
    return y
