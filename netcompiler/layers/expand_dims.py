"""`expand_dims`: adds a static axis of size `dim` (default 1).

`axis`:
- `F` / `feature`: a new feature axis `F=dim` at the end; the old feature axis becomes a static
  axis: `[B, T, F=8]` -> `[B, T, S=8, F=1]`.
- `T` / `time` / `spatial` / `static`: a static axis before the feature axis (after the last
  non-feature axis): `[B, T, F=8]` -> `[B, T, S=1, F=8]`; sparse `[B, T]` -> `[B, T, S=1]`.
- an integer: the new axis's position in the output, counted without the batch axis (negative
  from the end); a position after the feature axis means `F`.
"""

from __future__ import annotations

from netcompiler.core.dims import FEATURE, Shape, feature_dim, spatial_dim
from netcompiler.core.layer_rule import LayerRule, NoStepGuess
from netcompiler.layers._util import check_n_out, src_desc


class ExpandDimsRule(NoStepGuess, LayerRule):
    layer_class = "expand_dims"

    @staticmethod
    def plan(ctx, src: Shape) -> tuple[int, bool]:
        """(position of the new axis in the output dims, whether it is a new feature axis)."""
        desc = ctx.opt("axis")
        dense = src.feature is not None
        n = len(src.dims)
        if isinstance(desc, int) and not isinstance(desc, bool):
            offset = 1 if src.has_batch else 0  # batch-major: the batch axis comes first
            slots = n + 1 - offset  # output positions, counted without the batch axis
            if not -slots <= desc < slots:
                raise ctx.error(
                    f"`axis: {desc}` is out of range for {src_desc(ctx)}", "axis", "shape.axis"
                )
            pos = desc % slots + offset
            return pos, dense and pos == n
        low = str(desc).lower()
        if low in ("f", "feature"):
            if src.sparse:
                raise ctx.error(
                    f"`axis: {desc}`: sparse {src_desc(ctx)} has no feature axis to extend",
                    "axis",
                    "shape.sparse-input",
                    hint="use `axis: spatial`",
                )
            return n, True
        if low in ("t", "time", "spatial", "static"):
            return (n - 1 if dense else n), False
        raise ctx.error(
            f"`axis: {desc}` is not an axis `expand_dims` can add (F, T, spatial, or an integer)",
            "axis",
            "shape.axis",
        )

    def infer(self, ctx) -> Shape:
        src = ctx.source
        size = int(ctx.opt("dim"))
        pos, new_feature = self.plan(ctx, src)
        dims = list(src.dims)
        if new_feature:
            if dims and dims[-1].kind == FEATURE:
                dims[-1] = spatial_dim(dims[-1].size)
            dims.append(feature_dim(size))
        else:
            dims.insert(pos, spatial_dim(size))
        out = Shape(tuple(dims), src.sparse_dim, src.dtype)
        check_n_out(ctx, out)
        return out

    def call(self, ctx):
        import tensorflow as tf

        pos, _ = self.plan(ctx, ctx.source_shape)
        y = tf.expand_dims(ctx.source, pos)
        size = int(ctx.opt("dim"))
        if size != 1:
            multiples = [1] * (len(ctx.source_shape.dims) + 1)
            multiples[pos] = size
            y = tf.tile(y, multiples)
        return y
