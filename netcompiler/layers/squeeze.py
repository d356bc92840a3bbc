"""`squeeze`: removes static axes of size 1.

`axis` names the axes; a description naming several axes (`static`, `spatial`, a list) removes
those of size 1 among them; an axis named on its own must have size 1. Squeezing `F=1` leaves
data without a feature axis. Time axes cannot be squeezed (their size is not known to be 1).
"""

from __future__ import annotations

from netcompiler.core.dims import BATCH, TIME, Shape
from netcompiler.core.layer_rule import LayerRule
from netcompiler.layers._axes import resolve_axes
from netcompiler.layers._util import check_n_out, src_desc


class SqueezeRule(LayerRule):
    layer_class = "squeeze"

    @staticmethod
    def axes(ctx, src: Shape) -> list[int]:
        desc = ctx.opt("axis")
        found = resolve_axes(ctx, src, desc, "axis")
        several = isinstance(desc, (list, tuple)) or str(desc).lower() in ("static", "spatial")
        out = []
        for i in found:
            d = src.dims[i]
            if d.kind not in (BATCH, TIME) and d.size == 1:
                out.append(i)
            elif not several:
                raise ctx.error(
                    f"`axis: {desc}` is {d} in {src_desc(ctx)}; only static axes of "
                    f"size 1 can be squeezed",
                    "axis",
                    "shape.squeeze",
                )
        if not out and not ctx.opt("allow_no_op"):
            raise ctx.error(
                f"`axis: {desc}` names no static axis of size 1 in {src_desc(ctx)}",
                "axis",
                "shape.squeeze",
                hint="set `allow_no_op: true` to allow it",
            )
        return sorted(out)

    def infer(self, ctx) -> Shape:
        src = ctx.source
        axes = self.axes(ctx, src)
        out = Shape(
            tuple(d for i, d in enumerate(src.dims) if i not in axes), src.sparse_dim, src.dtype
        )
        check_n_out(ctx, out)
        return out

    def call(self, ctx):
        import tensorflow as tf

        axes = self.axes(ctx, ctx.source_shape)
        return tf.squeeze(ctx.source, axis=axes) if axes else ctx.source
