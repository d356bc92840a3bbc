"""Element-wise activation functions by name, as RETURNN configs write them.

A name is a base function, optionally scaled: `tanh`, `2*sigmoid`, `0.5*relu`. `None`, `none`,
`identity` and `linear` mean no activation. `softmax` and `log_softmax` work over the last
(feature) axis.

This module is the names and their parsing (the shape rules and the schema use them; no
TensorFlow); `netcompiler.backend.activations.apply_activation` computes them. (The tests' NumPy
references of the same functions are in `tests/numpy_reference.py`.)

Definitions where libraries differ: `gelu` is the tanh approximation
`0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))` (RETURNN's `gelu`), `leaky_relu` has slope 0.2 (TensorFlow's default), `hard_sigmoid` is
`relu6(x + 3) / 6` (Keras 3), `swish`/`silu` is `x * sigmoid(x)`.
"""

from __future__ import annotations

import re

#: activation names without scale; the schema pattern of `activation` lists the same names.
ACTIVATIONS = (
    "relu",
    "relu6",
    "leaky_relu",
    "elu",
    "selu",
    "gelu",
    "swish",
    "silu",
    "tanh",
    "sigmoid",
    "log_sigmoid",
    "hard_sigmoid",
    "softmax",
    "log_softmax",
    "softplus",
    "softsign",
    "abs",
    "square",
    "sqrt",
    "exp",
    "log",
    "identity",
    "linear",
    "none",
)
IDENTITY = ("identity", "linear", "none")
#: activations that normalise over the feature axis (not element-wise)
OVER_FEATURES = ("softmax", "log_softmax")
#: activations that can turn a finite input into NaN or inf (`sqrt` and `log` of a negative
#: number or of 0, `exp` of a large one); the others map finite values to finite values
MAY_BREAK_FINITENESS = ("sqrt", "log", "exp")

_SCALED = re.compile(r"^\s*(?:([0-9]+(?:\.[0-9]+)?)\s*\*\s*)?([a-z_0-9]+)\s*$")


def parse_activation(name: str | None) -> tuple[float, str]:
    """`"2*sigmoid"` -> `(2.0, "sigmoid")`; `None` -> `(1.0, "identity")`. ValueError if unknown."""
    if name is None:
        return 1.0, "identity"
    m = _SCALED.match(str(name))
    if not m or m.group(2) not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation `{name}` (known: {', '.join(ACTIVATIONS)}, "
            f"optionally scaled as `2*sigmoid`)"
        )
    scale = float(m.group(1)) if m.group(1) else 1.0
    return scale, m.group(2)


def keeps_finite(name: str | None) -> bool:
    """True when the activation maps every finite input to a finite output (overflow of a
    product aside, as for any layer): padded frames that held finite values still do, so the
    layer needs no padding mask for the "padding stays finite" contract."""
    return parse_activation(name)[1] not in MAY_BREAK_FINITENESS


def is_identity(name: str | None) -> bool:
    scale, base = parse_activation(name)
    return base in IDENTITY and scale == 1.0
