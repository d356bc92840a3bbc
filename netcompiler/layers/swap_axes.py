"""`swap_axes`: swaps the axes `axis1` and `axis2` (axis descriptions, see `_axes`), RETURNN's
SwapAxesLayer. The axes keep their identity (a time axis stays the same time axis with its
lengths), only their order changes. Swapping the feature axis away from the end leaves the axis
that comes last as the new feature axis if it is static (as RETURNN moves the feature axis with
the data); a time axis never becomes the feature axis.
"""

from __future__ import annotations

from netcompiler.core.dims import BATCH, FEATURE, SPATIAL, Shape, feature_dim, spatial_dim
from netcompiler.core.layer_rule import LayerRule, NoStepGuess
from netcompiler.layers._axes import resolve_axis
from netcompiler.layers._util import check_n_out, src_desc


class SwapAxesRule(NoStepGuess, LayerRule):
    layer_class = "swap_axes"

    @staticmethod
    def pair(ctx, src: Shape) -> tuple[int, int]:
        a = resolve_axis(ctx, src, ctx.opt("axis1"), "axis1")
        b = resolve_axis(ctx, src, ctx.opt("axis2"), "axis2")
        for opt, i in (("axis1", a), ("axis2", b)):
            if src.dims[i].kind == BATCH:
                raise ctx.error(
                    f"`swap_axes` cannot move the batch axis of {src_desc(ctx)}", opt, "shape.axis"
                )
        return a, b

    def infer(self, ctx) -> Shape:
        src = ctx.source
        a, b = self.pair(ctx, src)
        dims = list(src.dims)
        dims[a], dims[b] = dims[b], dims[a]
        # the feature axis is the last one: a static axis moved there becomes the feature
        # axis, the feature axis moved elsewhere becomes a static axis
        for i, d in enumerate(dims):
            last = i == len(dims) - 1
            if d.kind == FEATURE and not last:
                dims[i] = spatial_dim(d.size)
            elif d.kind == SPATIAL and last and not src.sparse:
                dims[i] = feature_dim(d.size)
        out = Shape(tuple(dims), src.sparse_dim, src.dtype)
        check_n_out(ctx, out)
        return out

    def call(self, ctx):
        import tensorflow as tf

        a, b = self.pair(ctx, ctx.source_shape)
        if a == b:
            return ctx.source
        perm = list(range(len(ctx.source_shape.dims)))
        perm[a], perm[b] = perm[b], perm[a]
        return tf.transpose(ctx.source, perm)
