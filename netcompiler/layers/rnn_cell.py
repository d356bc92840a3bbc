"""`rnn_cell`: one step of a recurrent cell inside a rec unit (`[B, n_in] -> [B, n_out]`, the
state carried from step to step), or, outside a rec unit, the cell run over the input's time
axis like `rec` with a cell unit (`[B, T, n_in] -> [B, T, n_out]`). Variables as `rec`."""
from __future__ import annotations

from ..dims import Shape
from .base import LayerRule, ParamSpec
from ._util import input_features
from .rec import cell_params, run_cell_over_time


class RnnCellRule(LayerRule):
    layer_class = "rnn_cell"

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
