"""`reduce_out`: reduce groups of `num_pieces` consecutive features (RETURNN's ReduceOutLayer):
[..., F] -> [..., F / num_pieces], as a reshape to [..., F / num_pieces, num_pieces] followed by
`mode` (`max`: maxout, `sum`, `mean`/`avg`) over the last axis. F must be divisible by
`num_pieces`.
"""

from __future__ import annotations

from netcompiler.core.dims import Shape, feature_dim
from netcompiler.core.layer_rule import LayerRule
from netcompiler.layers._util import check_n_out, src_desc
from netcompiler.layers.combine import GuessFromInputs

MODES = ("max", "sum", "mean", "avg")


class ReduceOutRule(GuessFromInputs, LayerRule):
    layer_class = "reduce_out"

    def infer(self, ctx) -> Shape:
        src = ctx.source
        if src.sparse or src.feature is None:
            raise ctx.error(
                f"`reduce_out` needs dense input with a feature axis, got {src_desc(ctx)}",
                "from",
                "shape.no-feature",
            )
        mode = ctx.opt("mode")
        if mode not in MODES:
            raise ctx.error(
                f"`mode: {mode}` is not one of {', '.join(MODES)}", "mode", "shape.reduce-mode"
            )
        n = ctx.opt("num_pieces")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ctx.error(
                f"`num_pieces: {n}` must be a positive integer", "num_pieces", "shape.reduce-out"
            )
        size = src.feature.size
        if size % n:
            raise ctx.error(
                f"`num_pieces: {n}` does not divide the {size} features of {src_desc(ctx)}",
                "num_pieces",
                "shape.reduce-out",
                hint=f"the input's features must be a multiple of {n}",
            )
        out = Shape(src.non_feature_dims + (feature_dim(size // n),), None, src.dtype)
        check_n_out(ctx, out)
        return out

    def call(self, ctx):
        import tensorflow as tf

        x = ctx.source
        n = int(ctx.opt("num_pieces"))
        f_out = ctx.out_shape.feature.size
        x = tf.reshape(x, tf.concat([tf.shape(x)[:-1], [f_out, n]], 0))
        fn = {
            "max": tf.reduce_max,
            "sum": tf.reduce_sum,
            "mean": tf.reduce_mean,
            "avg": tf.reduce_mean,
        }[ctx.opt("mode")]
        return fn(x, axis=-1)
