"""Initial values of variables from initialiser option values (see
`netcompiler.frontend.initializers` for the accepted forms and TF1's defaults)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from netcompiler.frontend.initializers import parse_initializer

_VS = {  # name -> (scale, mode, distribution) of the variance-scaling family (TF1)
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
}


def make_initial_value(init: Any, shape: tuple[int, ...], seed: int, dtype=None):
    """The initial value (a tf.Tensor of `shape`) of an initialiser option value. `seed` is
    used unless the initialiser names its own."""
    dtype = dtype or tf.float32
    spec = parse_initializer("glorot_uniform" if init is None else init)
    name, kw = spec.name, dict(spec.kwargs)
    if name == "zeros":
        return tf.zeros(shape, dtype)
    if name == "ones":
        return tf.ones(shape, dtype)
    if name == "constant":
        return tf.fill(shape, tf.cast(kw["value"], dtype))
    if not shape or 0 in shape:
        # the fan-based initialisers need a fan; scalars and empty tensors start at zero
        return tf.zeros(shape, dtype)
    if kw.get("seed") is not None:  # the config's own seed wins (as in RETURNN)
        seed = int(kw["seed"])
    kw.pop("seed", None)
    inits = tf.keras.initializers
    if name == "xavier":
        # RETURNN: variance_scaling(1, fan_avg, "uniform" or "normal"); TF1's "normal" is
        # the truncated normal
        name = "glorot_uniform" if kw["uniform"] else "glorot_normal"
    if name in _VS:
        kw = dict(zip(("scale", "mode", "distribution"), _VS[name]))
        name = "variance_scaling"
    if name == "variance_scaling":
        dist = kw["distribution"]
        dist = "truncated_normal" if dist == "normal" else dist  # TF1's alias
        init = inits.VarianceScaling(
            scale=float(kw["scale"]), mode=kw["mode"], distribution=dist, seed=seed
        )
    elif name == "random_normal":
        init = inits.RandomNormal(mean=float(kw["mean"]), stddev=float(kw["stddev"]), seed=seed)
    elif name == "truncated_normal":
        init = inits.TruncatedNormal(mean=float(kw["mean"]), stddev=float(kw["stddev"]), seed=seed)
    elif name == "random_uniform":
        init = inits.RandomUniform(
            minval=float(kw["minval"]), maxval=float(kw["maxval"]), seed=seed
        )
    elif name == "orthogonal":
        init = inits.Orthogonal(gain=float(kw["gain"]), seed=seed)
    else:  # pragma: no cover - every canonical name is handled above
        raise AssertionError(name)
    return tf.convert_to_tensor(init(shape, dtype=dtype))
