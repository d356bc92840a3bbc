"""`split_dims`: splits one axis into several, e.g. the features F=32 into (heads 4, per-head 8).

- Feature axis: the last part stays the feature axis, the others become static axes:
  `[B, T, F=32]` with `dims: [4, 8]` -> `[B, T, S=4, F=8]`.
- Static axis: all parts static.
- Time axis: only `dims: [-1, k1, ...]`: frame t goes to (t // K, t % K) with K = k1 * ...; the
  first part is a new time axis with lengths ceil(len / K) (the last group is zero-filled).
One entry of `dims` may be -1 (computed from the axis size).
"""

from __future__ import annotations

from netcompiler.core.dims import BATCH, FEATURE, TIME, Shape, feature_dim, spatial_dim
from netcompiler.core.layer_rule import LayerRule, NoStepGuess
from netcompiler.layers._axes import resolve_axis
from netcompiler.layers._util import check_n_out, pad_axis, src_desc, zero_padded


def _prod(values) -> int:
    n = 1
    for v in values:
        n *= int(v)
    return n


class SplitDimsRule(NoStepGuess, LayerRule):
    layer_class = "split_dims"

    @staticmethod
    def plan(ctx, src: Shape) -> tuple[int, list[int]]:
        """(axis index, the sizes of the parts with -1 resolved; -1 stays for a time axis)."""
        axis = resolve_axis(ctx, src, ctx.opt("axis"), "axis")
        dims = [int(d) for d in ctx.opt("dims")]
        dim = src.dims[axis]
        if any(d == 0 or d < -1 for d in dims):
            raise ctx.error(
                f"`dims: {dims}`: every entry must be positive or -1", "dims", "shape.split-dims"
            )
        if dims.count(-1) > 1:
            raise ctx.error(
                f"`dims: {dims}`: -1 may appear at most once", "dims", "shape.split-dims"
            )
        if dim.kind == BATCH:
            raise ctx.error(
                f"`split_dims` cannot split the batch axis of {src_desc(ctx)}",
                "axis",
                "shape.split-dims",
            )
        known = _prod(d for d in dims if d != -1)
        if dim.kind == TIME:
            if dims[0] != -1 or -1 in dims[1:]:
                raise ctx.error(
                    f"splitting the time axis {dim} of {src_desc(ctx)} needs `dims` of the form "
                    f"[-1, k, ...] (the new time axis first), got {dims}",
                    "dims",
                    "shape.split-dims",
                )
            return axis, dims
        size = dim.size
        if -1 in dims:
            if size % known:
                raise ctx.error(
                    f"`dims: {dims}` cannot split axis {dim} of {src_desc(ctx)}: {size} is not "
                    f"divisible by {known}",
                    "dims",
                    "shape.split-dims",
                )
            dims = [size // known if d == -1 else d for d in dims]
        elif known != size:
            raise ctx.error(
                f"`dims: {dims}` (product {known}) cannot split axis {dim} of {src_desc(ctx)}",
                "dims",
                "shape.split-dims",
                hint=f"the product of `dims` must be {size}",
            )
        return axis, dims

    def infer(self, ctx) -> Shape:
        src = ctx.source
        axis, parts = self.plan(ctx, src)
        dim = src.dims[axis]
        if dim.kind == TIME:
            new = [ctx.new_time_dim()] + [spatial_dim(p) for p in parts[1:]]
        elif dim.kind == FEATURE:
            new = [spatial_dim(p) for p in parts[:-1]] + [feature_dim(parts[-1])]
        else:
            new = [spatial_dim(p) for p in parts]
        dims = src.dims[:axis] + tuple(new) + src.dims[axis + 1 :]
        out = Shape(dims, src.sparse_dim, src.dtype)
        check_n_out(ctx, out)
        return out

    # -- builder ----------------------------------------------------------------------------------
    def call(self, ctx):
        import tensorflow as tf

        x = ctx.source
        shape = ctx.source_shape
        axis, parts = self.plan(ctx, shape)
        dim = shape.dims[axis]
        dyn = tf.shape(x)
        before = [dyn[i] for i in range(axis)]
        after = [dyn[i] for i in range(axis + 1, len(shape.dims))]
        if dim.kind != TIME:
            return tf.reshape(x, tf.stack(before + [tf.constant(p) for p in parts] + after))
        k = _prod(parts[1:])
        x = zero_padded(ctx, x, shape, dim)
        n = dyn[axis]
        groups = (n + k - 1) // k
        x = pad_axis(x, axis, len(shape.dims), 0, groups * k - n)
        y = tf.reshape(x, tf.stack(before + [groups] + [tf.constant(p) for p in parts[1:]] + after))
        lengths = ctx.lengths(dim)
        ctx.set_lengths(ctx.out_shape.dims[axis], (lengths + k - 1) // k)
        return y
