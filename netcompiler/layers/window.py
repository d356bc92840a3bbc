"""`window`: a sliding window over an axis; adds a static window axis `S=window_size` right after
it. `[B, T, F]` -> `[B, T, S=w, F]`.

- `padding: same`: the axis is kept (a time axis keeps its identity); frame t holds frames
  `t - window_left + k`, k = 0..w-1, zeros outside each sequence's valid frames. By default
  `window_right = w // 2`, `window_left = w - window_right - 1` (RETURNN's defaults).
- `padding: valid`: frame t holds frames `t + k`; a time axis becomes a new time axis with
  lengths `max(0, len - w + 1)`, a static axis `S=n` becomes `S=n-w+1`.
"""

from __future__ import annotations

from netcompiler.core.dims import BATCH, FEATURE, TIME, Shape, spatial_dim
from netcompiler.core.layer_rule import LayerRule, NoStepGuess
from netcompiler.layers._axes import resolve_axis
from netcompiler.layers._util import check_n_out, pad_axis, src_desc, zero_padded


class WindowRule(NoStepGuess, LayerRule):
    layer_class = "window"

    @staticmethod
    def plan(ctx, src: Shape) -> tuple[int, int, int, int, str]:
        """(axis index, window size, left, right, padding)."""
        axis = resolve_axis(ctx, src, ctx.opt("axis"), "axis")
        dim = src.dims[axis]
        if dim.kind in (BATCH, FEATURE):
            raise ctx.error(
                f"`window` runs over a time or static axis, but `axis: "
                f"{ctx.opt('axis')}` is {dim} of {src_desc(ctx)}",
                "axis",
                "shape.axis",
            )
        size = int(ctx.opt("window_size"))
        left, right = ctx.opt("window_left"), ctx.opt("window_right")
        padding = str(ctx.opt("padding")).lower()
        if left is not None and right is not None and left + right + 1 != size:
            raise ctx.error(
                f"`window_left: {left}` + `window_right: {right}` + 1 != `window_size: {size}`",
                "window_left",
                "shape.window",
            )
        if left is not None:
            right = size - left - 1
        elif right is not None:
            left = size - right - 1
        else:
            right = size // 2
            left = size - right - 1
        if left < 0 or right < 0:
            raise ctx.error(
                f"`window_left`/`window_right` do not fit `window_size: {size}`",
                "window_left" if left < 0 else "window_right",
                "shape.window",
            )
        if dim.kind == TIME and not src.has_batch:
            raise ctx.error(
                f"`window` over a time axis needs a batch axis, got {src_desc(ctx)}",
                "from",
                "shape.window",
            )
        return axis, size, left, right, padding

    def infer(self, ctx) -> Shape:
        src = ctx.source
        axis, size, _, _, padding = self.plan(ctx, src)
        dim = src.dims[axis]
        if padding == "valid":
            if dim.kind == TIME:
                dim = ctx.new_time_dim()
            else:
                if dim.size - size + 1 < 1:
                    raise ctx.error(
                        f"`window_size: {size}` is larger than axis {dim} of "
                        f"{src_desc(ctx)} (`padding: valid`)",
                        "window_size",
                        "shape.window",
                    )
                dim = spatial_dim(dim.size - size + 1)
        dims = src.dims[:axis] + (dim, spatial_dim(size)) + src.dims[axis + 1 :]
        out = Shape(dims, src.sparse_dim, src.dtype)
        check_n_out(ctx, out)
        return out

    def call(self, ctx):
        import tensorflow as tf

        x = ctx.source
        shape = ctx.source_shape
        axis, size, left, right, padding = self.plan(ctx, shape)
        dim = shape.dims[axis]
        if dim.kind == TIME:
            x = zero_padded(ctx, x, shape, dim)
        n = tf.shape(x)[axis]
        if padding == "valid":
            out_n = tf.maximum(n - size + 1, 0)
            pad_l, pad_r = 0, tf.maximum(size - 1 - n, 0)  # keep gathers in range
        else:
            out_n = n
            pad_l, pad_r = left, right
        xp = pad_axis(x, axis, len(shape.dims), pad_l, pad_r)
        frames = [tf.gather(xp, tf.range(out_n) + k, axis=axis) for k in range(size)]
        y = tf.stack(frames, axis=axis + 1)
        if dim.kind == TIME and padding == "valid":
            ctx.set_lengths(ctx.out_shape.dims[axis], tf.maximum(ctx.lengths(dim) - size + 1, 0))
        return y
