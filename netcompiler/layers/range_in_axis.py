"""`range_in_axis`: the positions 0 .. n-1 along one axis of the input (RETURNN's
RangeInAxisLayer). The output has just that axis, which keeps its identity: `axis: T` on
[B, T(data), F] gives [T(data)] int32 (its lengths still those of `data`; no batch axis), a
static axis of size n gives [F=n], `axis: B` gives [B] (0 .. batch size - 1).

`dtype` (int32 default, or float32); `sparse: true` makes the positions class indices of a
static axis (n classes). RETURNN's deprecated `unbroadcast` and `keepdims` must stay false.
"""

from __future__ import annotations

from netcompiler.core.dims import FEATURE, SPATIAL, Shape, feature_dim, spatial_dim
from netcompiler.core.layer_rule import LayerRule, NoStepGuess
from netcompiler.layers._axes import resolve_axis
from netcompiler.layers._util import src_desc


class RangeInAxisRule(NoStepGuess, LayerRule):
    layer_class = "range_in_axis"

    def infer(self, ctx) -> Shape:
        src = ctx.source
        for opt in ("unbroadcast", "keepdims"):
            if ctx.opt(opt):
                raise ctx.error(
                    f"`{opt}: true` is not supported (deprecated in RETURNN, which refuses it too)",
                    opt,
                    "shape.unsupported",
                    hint="leave it out: the output is the axis alone",
                )
        i = resolve_axis(ctx, src, ctx.opt("axis"), "axis")
        d = src.dims[i]
        dtype = ctx.opt("dtype")
        if ctx.opt("sparse"):
            if d.kind not in (SPATIAL, FEATURE):
                raise ctx.error(
                    f"`sparse: true` needs a static axis (the number of classes), "
                    f"but `axis: {ctx.opt('axis')}` is {d} of {src_desc(ctx)}",
                    "sparse",
                    "shape.axis",
                )
            if dtype != "int32":
                raise ctx.error(
                    f"`sparse: true` needs `dtype: int32`, got {dtype}", "dtype", "shape.dtype"
                )
            # class indices have no feature axis: the axis is a static one of n entries
            return Shape((spatial_dim(d.size),), int(d.size), "int32")
        if d.kind == SPATIAL:
            d = feature_dim(d.size)  # the only axis: the feature axis
        return Shape((d,), None, dtype)

    def call(self, ctx):
        import tensorflow as tf

        src = ctx.source_shape
        i = resolve_axis(ctx, src, ctx.opt("axis"), "axis")
        n = tf.shape(ctx.source)[i]
        return tf.range(n, dtype=tf.as_dtype(ctx.opt("dtype")))
