"""Activation functions by name (see `netcompiler.frontend.activations` for the names, the
scaled form `2*sigmoid`, and where definitions differ between libraries), as TensorFlow ops."""

from __future__ import annotations

import math

import tensorflow as tf

from netcompiler.frontend.activations import IDENTITY, parse_activation


def _gelu(x):  # the tanh approximation (RETURNN's `gelu`)
    return 0.5 * x * (1.0 + tf.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


_FUNCTIONS = {
    "relu": tf.nn.relu,
    "relu6": tf.nn.relu6,
    "leaky_relu": lambda x: tf.nn.leaky_relu(x, alpha=0.2),
    "elu": tf.nn.elu,
    "selu": tf.nn.selu,
    "gelu": _gelu,
    "swish": lambda x: x * tf.sigmoid(x),
    "silu": lambda x: x * tf.sigmoid(x),
    "tanh": tf.tanh,
    "sigmoid": tf.sigmoid,
    "log_sigmoid": tf.math.log_sigmoid,
    "hard_sigmoid": lambda x: tf.nn.relu6(x + 3.0) / 6.0,
    "softmax": lambda x: tf.nn.softmax(x, axis=-1),
    "log_softmax": lambda x: tf.nn.log_softmax(x, axis=-1),
    "softplus": tf.nn.softplus,
    "softsign": tf.nn.softsign,
    "abs": tf.abs,
    "square": tf.square,
    "sqrt": tf.sqrt,
    "exp": tf.exp,
    "log": tf.math.log,
}


def apply_activation(name: str | None, x):
    """The activation `name` (e.g. `"tanh"`, `"2*sigmoid"`, None) applied to the tensor `x`."""
    scale, base = parse_activation(name)
    y = x if base in IDENTITY else _FUNCTIONS[base](x)
    if scale != 1.0:
        y = tf.cast(scale, y.dtype) * y
    return y
