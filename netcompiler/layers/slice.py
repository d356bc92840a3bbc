"""`slice`: `x[start:end:step]` along one axis (Python slice semantics, step >= 1).

- Static axis `S=n` (or the feature axis): a smaller static axis of `len(range(n)[start:end:step])`.
- Time axis: a new time axis; each sequence is sliced within its own valid frames, so negative
  `slice_start`/`slice_end` count from each sequence's end, and the new length of sequence b is
  `len(range(len[b])[start:end:step])`.
"""

from __future__ import annotations

from netcompiler.core.dims import BATCH, FEATURE, TIME, Shape, feature_dim, spatial_dim
from netcompiler.core.layer_rule import LayerRule
from netcompiler.layers._axes import resolve_axis
from netcompiler.layers._util import check_n_out, src_desc


class SliceRule(LayerRule):
    layer_class = "slice"

    @staticmethod
    def axis(ctx, src: Shape) -> int:
        axis = resolve_axis(ctx, src, ctx.opt("axis"), "axis")
        if src.dims[axis].kind == BATCH:
            raise ctx.error(
                f"`slice` cannot slice the batch axis of {src_desc(ctx)}", "axis", "shape.axis"
            )
        return axis

    def infer(self, ctx) -> Shape:
        src = ctx.source
        axis = self.axis(ctx, src)
        dim = src.dims[axis]
        start, end, step = ctx.opt("slice_start"), ctx.opt("slice_end"), ctx.opt("slice_step")
        if step is not None and step < 1:
            raise ctx.error(f"`slice_step: {step}` must be positive", "slice_step", "shape.slice")
        if dim.kind == TIME:
            if not src.has_batch:
                raise ctx.error(
                    f"`slice` over a time axis needs a batch axis, got {src_desc(ctx)}",
                    "from",
                    "shape.no-batch",
                )
            new = ctx.new_time_dim()
        else:
            size = len(range(dim.size)[slice(start, end, step)])
            if size == 0:
                raise ctx.error(
                    f"`slice` [{start}:{end}:{step}] of axis {dim} of {src_desc(ctx)} is empty",
                    "slice_start",
                    "shape.slice-empty",
                )
            new = feature_dim(size) if dim.kind == FEATURE else spatial_dim(size)
        dims = src.dims[:axis] + (new,) + src.dims[axis + 1 :]
        out = Shape(dims, src.sparse_dim, src.dtype)
        check_n_out(ctx, out)
        return out

    def call(self, ctx):
        import tensorflow as tf

        x = ctx.source
        shape = ctx.source_shape
        axis = self.axis(ctx, shape)
        dim = shape.dims[axis]
        start, end, step = ctx.opt("slice_start"), ctx.opt("slice_end"), ctx.opt("slice_step")
        step = 1 if step is None else int(step)
        if dim.kind != TIME:
            index = [slice(None)] * len(shape.dims)
            index[axis] = slice(start, end, step)
            return x[tuple(index)]
        lengths = ctx.lengths(dim)  # [B]

        def bound(value, default):
            if value is None:
                return default
            v = tf.fill(tf.shape(lengths), tf.constant(int(value), tf.int32))
            v = tf.where(v < 0, v + lengths, v)
            return tf.clip_by_value(v, 0, lengths)

        b_start = bound(start, tf.zeros_like(lengths))
        b_end = tf.maximum(bound(end, lengths), b_start)
        new_len = (b_end - b_start + step - 1) // step  # [B]
        t_out = tf.reduce_max(tf.concat([new_len, [0]], 0))
        n = tf.shape(x)[axis]
        pos = b_start[:, None] + step * tf.range(t_out)[None, :]  # [B, T_out]
        valid = tf.range(t_out)[None, :] < new_len[:, None]
        pos = tf.clip_by_value(pos, 0, tf.maximum(n - 1, 0))
        batch_axis = 0
        # move the sliced axis next to the batch axis, gather per sequence, move it back
        perm = [batch_axis, axis] + [i for i in range(len(shape.dims)) if i not in (0, axis)]
        xt = tf.transpose(x, perm) if perm != list(range(len(perm))) else x
        xt = tf.concat([xt, tf.zeros_like(xt[:, :1])], axis=1)  # a zero frame for empty input
        y = tf.gather(xt, pos, axis=1, batch_dims=1)
        mask = tf.reshape(
            valid, tf.concat([tf.shape(valid), tf.ones([len(shape.dims) - 2], tf.int32)], 0)
        )
        y = tf.where(mask, y, tf.zeros_like(y))
        inverse = [perm.index(i) for i in range(len(perm))]
        if inverse != list(range(len(inverse))):
            y = tf.transpose(y, inverse)
        ctx.set_lengths(ctx.out_shape.dims[axis], new_len)
        return y
