"""`length`: the per-sequence lengths of a time axis of the input (`axis`, default `T`):
`[B] int32`."""

from __future__ import annotations

from netcompiler.core.dims import BATCH_DIM, TIME, Shape
from netcompiler.core.layer_rule import LayerRule
from netcompiler.layers._axes import resolve_axis


class LengthRule(LayerRule):
    layer_class = "length"

    def infer(self, ctx) -> Shape:
        src = ctx.source
        axis = ctx.opt("axis")
        if src.time is None:
            raise ctx.error(
                f"`length` needs an input with a time axis, got "
                f"`{', '.join(ctx.source_names)}` {src}",
                "from",
                "shape.no-time",
            )
        i = resolve_axis(ctx, src, axis, "axis")
        dim = src.dims[i]
        if dim.kind != TIME:
            raise ctx.error(
                f"`axis: {axis}` names {dim} of `{', '.join(ctx.source_names)}` "
                f"{src}, which is not a time axis (no lengths)",
                "axis",
                "shape.axis",
                hint="use `T` or `stag:NAME`",
            )
        return Shape((BATCH_DIM,), None, "int32")

    def guess_step_shape(self, ctx):
        return Shape((BATCH_DIM,), None, "int32")

    def call(self, ctx):
        src = ctx.source_shape
        dim = src.dims[resolve_axis(ctx, src, ctx.opt("axis"), "axis")]
        return ctx.lengths(dim)
