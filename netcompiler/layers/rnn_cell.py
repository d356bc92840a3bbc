"""`rnn_cell`: one step of a recurrent cell inside a rec unit (`[B, n_in] -> [B, n_out]`, the
state carried from step to step), or, outside a rec unit, the cell run over the input's time
axis like `rec` with a cell unit (`[B, T, n_in] -> [B, T, n_out]`). Variables as `rec`."""
from __future__ import annotations

from ..dims import Shape
from .base import LayerRule, ParamSpec
from ._util import input_features
from .rec import cell_params, gru_step, is_gru, lstm_step, run_cell_over_time


class RnnCellRule(LayerRule):
    layer_class = "rnn_cell"

    # -- one step inside a rec unit (run by netcompiler.loop) ------------------------------------
    def initial_state(self, ctx, batch_size, max_steps=None):
        """The cell state at step 0: (c, h) for the LSTM family, (h,) for GRU, [B, n_out]."""
        import tensorflow as tf

        n = ctx.out_shape.feature_size
        init = ctx.opt("initial_state", None)
        if init is None or init == "zeros":
            value = 0.0
        elif init == "ones":
            value = 1.0
        elif isinstance(init, (int, float)) and not isinstance(init, bool):
            value = float(init)
        else:
            raise NotImplementedError(f"{ctx.name}: `initial_state: {init}` inside a rec unit")
        h = tf.fill(tf.stack([batch_size, n]), value)
        return (h,) if is_gru(ctx.opt("unit")) else (h, h)

    def call_step(self, ctx, state):
        """One step: x [B, n_in] (sparse: [B] labels) -> (h [B, n_out], new state); the same
        gate layout as `rec.run_cell_over_time`."""
        import tensorflow as tf

        W, W_re, b = ctx.params["W"], ctx.params["W_re"], ctx.params["b"]
        x = ctx.source
        if ctx.source_shape.sparse:
            xp = tf.gather(W, x) + b
        else:
            xp = tf.matmul(x, W) + b
        if is_gru(ctx.opt("unit")):
            (h,) = state
            h_new = gru_step(xp, h, W_re)
            return h_new, (h_new,)
        c, h = state
        c_new, h_new = lstm_step(xp, c, h, W_re)
        return h_new, (c_new, h_new)

    def infer(self, ctx) -> Shape:
        src = ctx.source
        input_features(ctx, src)
        n_out = ctx.opt("n_out")
        if n_out is None:
            raise ctx.error("`rnn_cell` needs `n_out`", None, "shape.missing-option")
        if src.time is None and not ctx.in_rec:
            raise ctx.error(
                f"`rnn_cell` outside a rec unit runs over a time axis, but input "
                f"`{', '.join(ctx.source_names)}` {src}", "from", "shape.no-time",
                hint="use it inside a rec unit for one step")
        return src.with_feature(n_out)

    def params(self, ctx, out: Shape) -> dict[str, ParamSpec]:
        n_in = input_features(ctx, ctx.source)
        return cell_params(ctx.opt("unit"), n_in, out.feature_size,
                           ctx.opt("forward_weights_init"))

    def call(self, ctx):
        import tensorflow as tf

        shape = ctx.source_shape
        if shape.time is None:
            raise NotImplementedError("rnn_cell inside a rec unit (one step) is run by the "
                                      "decoder loop")
        x = ctx.source
        if shape.sparse:
            x = tf.one_hot(x, shape.sparse_dim, dtype=tf.float32)
            shape = shape.dense()
        return run_cell_over_time(ctx.opt("unit"), x, shape, ctx.lengths(shape.time),
                                  ctx.params, 1)
