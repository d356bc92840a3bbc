"""`rec`: a recurrent layer over a time axis.

With `unit` naming a cell (lstm family, gru) it runs that cell over its input's time axis:
[B, T, n_in] -> [B, T, n_out] (`direction: -1` runs backwards within each sequence's length).
With `unit` a sub-network dict it runs the sub-network step by step (a decoder): its output is
the unit's `output` layer stacked over the loop: [B, T_loop, ...].
"""
from __future__ import annotations

from ..dims import BATCH, Dim, Shape
from .base import LayerRule, NoStepGuess, ParamSpec
from ._util import input_features

LSTM_UNITS = ("lstm", "lstmp", "nativelstm", "nativelstm2", "standardlstm", "basiclstm",
              "lstmblock")
GRU_UNITS = ("gru",)


def is_gru(unit) -> bool:
    """True for a GRU cell unit, False for the LSTM family."""
    return str(unit).lower() in GRU_UNITS


def stacked_shape(shape: Shape, loop_dim: Dim) -> Shape:
    """A per-step shape with the loop axis inserted after the batch axis (unchanged if it
    already has the loop axis, e.g. an output layer moved out of the loop)."""
    if shape.has(loop_dim):
        return shape
    dims = list(shape.dims)
    at = 1 if dims and dims[0].kind == BATCH else 0
    dims.insert(at, loop_dim)
    return Shape(tuple(dims), shape.sparse_dim, shape.dtype)


def cell_gates(unit: str) -> int:
    """Gate blocks of a cell's weight matrices: 4 for the LSTM family, 3 for GRU."""
    return 3 if is_gru(unit) else 4


def lstm_step(xp, c, h, W_re):
    """One LSTM step from the projected input xp = x W + b: (c', h'); gate blocks (i, j, f, o)."""
    import tensorflow as tf

    i, j, f, o = tf.split(xp + tf.matmul(h, W_re), 4, axis=-1)
    c_new = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(j)
    h_new = tf.sigmoid(o) * tf.tanh(c_new)
    return c_new, h_new


def gru_step(xp, h, W_re):
    """One GRU step from the projected input xp = x W + b: h'; gate blocks (z, r, h)."""
    import tensorflow as tf

    xz, xr, xh = tf.split(xp, 3, axis=-1)
    uz, ur, uh = tf.split(W_re, 3, axis=-1)
    z = tf.sigmoid(xz + tf.matmul(h, uz))
    r = tf.sigmoid(xr + tf.matmul(h, ur))
    cand = tf.tanh(xh + tf.matmul(r * h, uh))
    return z * h + (1 - z) * cand


def cell_params(unit: str, n_in: int, n_out: int, init, bias_init=0.0) -> dict[str, ParamSpec]:
    """Cell variables: input weights `W: [n_in, G*n]`, recurrent `W_re: [n, G*n]`, `b: [G*n]`."""
    g = cell_gates(unit)
    return {
        "W": ParamSpec((n_in, g * n_out), init),
        "W_re": ParamSpec((n_out, g * n_out), init),
        "b": ParamSpec((g * n_out,), bias_init),
    }


class RecRule(NoStepGuess, LayerRule):
    layer_class = "rec"

    def infer(self, ctx) -> Shape:
        unit = ctx.opt("unit")
        if isinstance(unit, dict):
            return self._infer_subnetwork(ctx)
        src = ctx.source
        input_features(ctx, src)
        if src.time is None:
            raise ctx.error(f"`rec` with `unit: {unit}` needs an input with a time axis, got "
                            f"`{', '.join(ctx.source_names)}` {src}", "from", "shape.no-time")
        n_out = ctx.opt("n_out")
        if n_out is None:
            raise ctx.error(f"`rec` with `unit: {unit}` needs `n_out`", None,
                            "shape.missing-option")
        return src.with_feature(n_out)

    def _infer_subnetwork(self, ctx) -> Shape:
        step = ctx.unit_shape("output")
        if step is None:
            raise ctx.error(f"the unit of `{ctx.name}` has no usable `output` layer", "unit",
                            "shape.rec-output")
        return stacked_shape(step, ctx.rec_loop_dim)

    def params(self, ctx, out: Shape) -> dict[str, ParamSpec]:
        unit = ctx.opt("unit")
        if isinstance(unit, dict):
            return {}
        n_in = input_features(ctx, ctx.source)
        return cell_params(unit, n_in, out.feature_size, ctx.opt("forward_weights_init"))

    def call(self, ctx):
        unit = ctx.opt("unit")
        if isinstance(unit, dict):
            raise NotImplementedError("rec units are run by the network's loop builder")
        shape = ctx.source_shape
        time = shape.time
        return run_cell_over_time(unit, ctx.source, ctx.source_shape, ctx.lengths(time),
                                  ctx.params, ctx.opt("direction"))


def run_cell_over_time(unit: str, x, shape, lengths, params, direction: int = 1):
    """Run an LSTM-family or GRU cell over the time axis of x [B, T, n_in] -> [B, T, n_out].

    LSTM: gate blocks of the columns of `W`/`W_re`/`b` are (i, j, f, o): input gate, new input,
    forget gate (no extra forget bias), output gate; c' = sigmoid(f) c + sigmoid(i) tanh(j),
    h' = sigmoid(o) tanh(c'). GRU: blocks (z, r, h): z, r gates, candidate
    tanh(x W_h + (r h) U_h + b_h), h' = z h + (1 - z) candidate.
    At padded frames the state is not updated and the output is 0. `direction: -1` runs each
    sequence backwards within its own length (outputs stay at their frames).
    """
    import tensorflow as tf

    if shape.dims.index(shape.time) != 1 or len(shape.dims) != 3:
        raise ValueError(f"cells run over [B, T, F] inputs, got {shape}")
    W, W_re, b = params["W"], params["W_re"], params["b"]
    n = W_re.shape[0]
    if direction == -1:
        x = tf.reverse_sequence(x, lengths, seq_axis=1, batch_axis=0)
    x_proj = tf.tensordot(x, W, axes=[[2], [0]]) + b  # [B, T, G*n], all frames at once
    mask = tf.sequence_mask(lengths, maxlen=tf.shape(x)[1], dtype=x_proj.dtype)  # [B, T]
    xs = tf.transpose(x_proj, [1, 0, 2])  # time-major for the scan
    ms = tf.transpose(mask, [1, 0])[:, :, None]
    batch = tf.shape(x)[0]
    zeros = tf.zeros([batch, n], x_proj.dtype)

    def masked_lstm_step(carry, inp):
        c, h, _ = carry
        xp, m = inp
        c_new, h_new = lstm_step(xp, c, h, W_re)
        c = m * c_new + (1 - m) * c
        h = m * h_new + (1 - m) * h
        return c, h, h_new * m

    def masked_gru_step(carry, inp):
        _, h, _ = carry
        xp, m = inp
        h_new = gru_step(xp, h, W_re)
        h = m * h_new + (1 - m) * h
        return h, h, h_new * m

    step = masked_gru_step if is_gru(unit) else masked_lstm_step
    _, _, ys = tf.scan(step, (xs, ms), initializer=(zeros, zeros, zeros))
    y = tf.transpose(ys, [1, 0, 2])
    if direction == -1:
        y = tf.reverse_sequence(y, lengths, seq_axis=1, batch_axis=0)
    return y
