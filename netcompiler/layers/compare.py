"""`compare`: element-wise comparison -> bool.

Operands are the inputs in `from` order, followed by `value` if given; with more than two
operands the comparisons are chained and and-ed (`a < b < c`). The output is the broadcast of
the inputs (as `combine`), dtype bool, never sparse: a sparse `[B]` input gives `[B] bool`.
"""

from __future__ import annotations

from netcompiler.core.dims import Shape
from netcompiler.core.layer_rule import LayerRule
from netcompiler.layers._util import check_n_out
from netcompiler.layers.combine import GuessFromInputs, align, broadcast_shape, dim_size

COMPARE_KINDS = ("equal", "not_equal", "less", "less_equal", "greater", "greater_equal")


class CompareRule(GuessFromInputs, LayerRule):
    layer_class = "compare"
    position_wise = True
    concat_sources = False
    broadcasts_sources = True

    def infer(self, ctx) -> Shape:
        kind = ctx.opt("kind")
        value = ctx.opt("value")
        n = len(ctx.sources) + (value is not None)
        if not ctx.sources:
            raise ctx.error("`compare` needs at least one input", "from", "shape.inputs")
        if n < 2:
            raise ctx.error(
                f"`compare` with `kind: {kind}` of one input "
                f"`{ctx.source_names[0]}` {ctx.sources[0]} needs `value` or a "
                f"second input",
                "value",
                "shape.inputs",
            )
        bools = [
            (nm, s)
            for nm, s in zip(ctx.source_names, ctx.sources)
            if s.dtype == "bool" and not s.sparse
        ]
        if bools and (
            len(bools) != len(ctx.sources) or (value is not None and not isinstance(value, bool))
        ):
            nm, s = bools[0]
            raise ctx.error(
                f"`compare` of bool `{nm}` {s} with non-bool operands", "from", "shape.dtype"
            )
        dims = broadcast_shape(ctx, ctx.sources, ctx.source_names)
        out = Shape(dims, None, "bool")
        check_n_out(ctx, out)
        return out

    def call(self, ctx):
        import tensorflow as tf

        out = ctx.out_shape
        xs = [align(x, s, out) for x, s in zip(ctx.sources, ctx.source_shapes)]
        dtypes = {x.dtype for x in xs}
        value = ctx.opt("value")
        if len(dtypes) > 1 or (isinstance(value, float) and xs[0].dtype.is_integer):
            xs = [tf.cast(x, tf.float32) for x in xs]
        if value is not None:
            xs.append(tf.constant(value, dtype=xs[0].dtype))
        op = {
            "equal": tf.equal,
            "not_equal": tf.not_equal,
            "less": tf.less,
            "less_equal": tf.less_equal,
            "greater": tf.greater,
            "greater_equal": tf.greater_equal,
        }[ctx.opt("kind")]
        y = None
        for a, b in zip(xs[:-1], xs[1:]):
            r = op(a, b)
            y = r if y is None else tf.logical_and(y, r)
        target = [dim_size(ctx, d) for d in out.dims]
        y = tf.broadcast_to(y, tf.stack(target)) if target and None not in target else y
        mask = ctx.valid_mask(out, y) if out.time_dims else None
        return y if mask is None else tf.logical_and(y, mask)
