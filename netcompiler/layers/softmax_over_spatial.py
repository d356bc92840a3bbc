"""`softmax_over_spatial`: softmax over a time axis, padded frames masked (semantics.md).

Same axes as the input. Order: mask (lengths, optional window) -> times `energy_factor` ->
softmax over the axis; masked entries come out exactly 0 (`log_space`: log-softmax, masked
entries the dtype's lowest value).
"""

from __future__ import annotations

from netcompiler.core.dims import BATCH, TIME, Shape
from netcompiler.core.layer_rule import LayerRule
from netcompiler.layers._axes import resolve_axis


def softmax_axis(ctx, shape: Shape) -> int:
    """Index of the axis the softmax runs over (`axis`, default: the time axis).

    With several time axes (e.g. `[B, T(dec), T(enc)]` from a `dot` moved out of a loop) the
    default is the last one: the attended key axis comes after the shared/query axes.
    """
    desc = ctx.opt("axis")
    if desc is None:
        times = [i for i, d in enumerate(shape.dims) if d.kind == TIME]
        if not times:
            raise ctx.error(
                f"`softmax_over_spatial` needs a time axis, but input "
                f"`{', '.join(ctx.source_names)}` {shape}",
                "from",
                "shape.no-time",
                hint="set `axis` to the axis to normalise over",
            )
        return times[-1]
    index = resolve_axis(ctx, shape, desc, "axis")
    if shape.dims[index].kind == BATCH:
        raise ctx.error(f"`axis: {desc}` is the batch axis of {shape}", "axis", "shape.axis")
    return index


class SoftmaxOverSpatialRule(LayerRule):
    layer_class = "softmax_over_spatial"
    layer_options = ("window_start",)

    def infer(self, ctx) -> Shape:
        src = ctx.source
        if src.sparse:
            raise ctx.error(
                f"`softmax_over_spatial` needs dense energies, but input "
                f"`{', '.join(ctx.source_names)}` {src}",
                "from",
                "shape.sparse-input",
            )
        softmax_axis(ctx, src)
        start = ctx.opts.get("window_start")
        if start is not None:
            if ctx.opt("window_size") is None:
                raise ctx.error(
                    "`window_start` needs `window_size`", "window_size", "shape.missing-option"
                )
            ws = ctx.ref("window_start")
            if ws is not None:
                ok = ws.has_batch and all(d.kind == BATCH or d.size == 1 for d in ws.dims)
                if not ok:
                    raise ctx.error(
                        f"`window_start` `{ctx.ref_name('window_start')}` {ws}, but "
                        f"`{ctx.name}` needs one start frame per sequence: [B] or [B, F=1]",
                        "window_start",
                        "shape.window-start",
                    )
        elif ctx.opts.get("window_size") is not None:
            raise ctx.error(
                "`window_size` needs `window_start`", "window_start", "shape.missing-option"
            )
        return src

    def call(self, ctx):
        import tensorflow as tf

        x = ctx.source
        shape = ctx.source_shape
        axis = softmax_axis(ctx, shape)
        dim = shape.dims[axis]
        mask = None
        if dim.kind == TIME and ctx.opt("use_time_mask") and ctx.has_lengths(dim):
            # by position: `dim` may occur twice (a [T, T, F] table), ctx.time_mask would mask
            # the first occurrence
            mask = ctx.time_mask(shape, dim, x, axis=axis)
        if ctx.opts.get("window_start") is not None:
            start = ctx.ref("window_start")
            if start is None:
                start = tf.fill([tf.shape(x)[0]], int(ctx.opt("window_start")))
            start = tf.reshape(tf.cast(start, tf.int32), [-1])  # floats truncate, as int()
            size = int(ctx.opt("window_size"))
            t = tf.range(tf.shape(x)[axis])[None, :]
            win = (t >= start[:, None]) & (t < start[:, None] + size)  # [B, T]
            batch_axis = next(i for i, d in enumerate(shape.dims) if d.kind == BATCH)
            if batch_axis > axis:
                win = tf.transpose(win)
            new_shape = [1] * shape.ndim
            new_shape[batch_axis] = -1
            new_shape[axis] = tf.shape(x)[axis]
            win = tf.reshape(win, tf.stack(new_shape))
            mask = win if mask is None else tf.logical_and(mask, win)
        factor = ctx.opt("energy_factor")
        if factor is not None:
            x = x * tf.cast(factor, x.dtype)
        log_space = bool(ctx.opt("log_space"))
        if mask is None:
            return tf.nn.log_softmax(x, axis=axis) if log_space else tf.nn.softmax(x, axis=axis)
        mask = tf.broadcast_to(mask, tf.shape(x))
        lowest = tf.constant(x.dtype.min, x.dtype)
        x = tf.where(mask, x, lowest)
        if log_space:
            return tf.where(mask, tf.nn.log_softmax(x, axis=axis), lowest)
        return tf.where(mask, tf.nn.softmax(x, axis=axis), tf.zeros_like(x))
