"""`reduce`: masked reduction over axes (sum, max, min, mean (alias `avg`), logsumexp, argmax,
argmin).

Padded frames never count: `mean` over a time axis divides by each sequence's length, `max`
ignores padded frames. Reduced axes disappear (`keep_dims`: they become static size-1 axes;
the feature axis stays a feature axis `F=1`).

`argmax` / `argmin` (as RETURNN's ReduceLayer): one axis only, int32 indices of the largest /
smallest entry (padded frames never chosen); the output is sparse with the reduced axis's size as
the number of classes (a static axis or the feature axis); over a time axis it is plain int32
(the number of classes would be dynamic). With `keep_dims` the axis stays as `S=1`.
"""

from __future__ import annotations

from netcompiler.core.dims import BATCH, FEATURE, TIME, Shape, feature_dim, spatial_dim
from netcompiler.core.layer_rule import LayerRule, NoStepGuess
from netcompiler.layers._axes import resolve_axes
from netcompiler.layers._util import check_n_out, src_desc

MODES = ("sum", "max", "min", "mean", "avg", "logsumexp", "argmax", "argmin")
ARG_MODES = ("argmax", "argmin")


class ReduceRule(NoStepGuess, LayerRule):
    """Reduces the axes named by `axes` (or `axis`) with `mode`."""

    layer_class = "reduce"

    @staticmethod
    def reduce_axes(ctx, src: Shape) -> list[int]:
        axes, axis = ctx.opts.get("axes"), ctx.opts.get("axis")
        if axes is not None and axis is not None:
            raise ctx.error(
                "`reduce` takes `axes` or `axis`, not both",
                "axis",
                "shape.reduce-axes",
                hint="use `axes`",
            )
        if axes is None and axis is None:
            raise ctx.error(
                f"`reduce` needs `axes` (the axes of {src_desc(ctx)} to reduce)",
                None,
                "shape.missing-option",
            )
        option = "axes" if axes is not None else "axis"
        desc = axes if axes is not None else axis
        found = sorted(resolve_axes(ctx, src, desc, option))
        if isinstance(desc, (list, tuple)) and not desc:
            raise ctx.error(f"`{option}` names no axis of {src_desc(ctx)}", option, "shape.axis")
        # empty for `T?` on data without a time axis: then nothing is reduced (RETURNN)
        return found

    def infer(self, ctx) -> Shape:
        src = ctx.source
        if src.sparse:
            raise ctx.error(
                f"`reduce` needs dense input, but {src_desc(ctx)} is sparse (class indices)",
                "from",
                "shape.sparse-input",
                hint="embed the labels first (`linear`)",
            )
        mode = ctx.opt("mode")
        if mode not in MODES:
            raise ctx.error(
                f"`mode: {mode}` is not one of {', '.join(MODES)}", "mode", "shape.reduce-mode"
            )
        axes = self.reduce_axes(ctx, src)
        keep = bool(ctx.opt("keep_dims"))
        sparse_dim, dtype = None, src.dtype
        if mode in ARG_MODES:
            if len(axes) != 1:
                raise ctx.error(
                    f"`mode: {mode}` reduces exactly one axis, `axes` names "
                    f"{len(axes)} of {src_desc(ctx)}",
                    "axes",
                    "shape.reduce-axes",
                )
            d = src.dims[axes[0]]
            if d.kind == BATCH:
                raise ctx.error(
                    f"`mode: {mode}` over the batch axis of {src_desc(ctx)}",
                    "axes",
                    "shape.reduce-axes",
                )
            dtype = "int32"
            sparse_dim = d.size if d.kind != TIME else None
        dims = []
        for i, d in enumerate(src.dims):
            if i not in axes:
                dims.append(d)
            elif keep:
                if d.kind == BATCH:
                    raise ctx.error(
                        f"`keep_dims` cannot keep the batch axis of {src_desc(ctx)}",
                        "keep_dims",
                        "shape.reduce-axes",
                    )
                dims.append(
                    feature_dim(1)
                    if d.kind == FEATURE and mode not in ARG_MODES
                    else spatial_dim(1)
                )
        out = Shape(tuple(dims), sparse_dim, dtype)
        check_n_out(ctx, out)
        return out

    # -- builder ----------------------------------------------------------------------------------
    def call(self, ctx):
        import tensorflow as tf

        x = ctx.source
        shape = ctx.source_shape
        axes = self.reduce_axes(ctx, shape)
        if not axes:
            return x
        mode = ctx.opt("mode")
        if mode == "avg":
            mode = "mean"
        keep = bool(ctx.opt("keep_dims"))
        mask = None
        if ctx.opt("use_time_mask"):
            # every time axis by position (ctx.valid_mask finds axes by `Dim`, so of a repeated
            # axis, e.g. [T, T, F], it would mask the first occurrence only)
            for i, d in enumerate(shape.dims):
                if d.kind == TIME and ctx.has_lengths(d):
                    m = ctx.time_mask(shape, d, x, axis=i)
                    mask = m if mask is None else tf.logical_and(mask, m)
        if mask is not None:
            mask = tf.broadcast_to(mask, tf.shape(x))
        dtype = x.dtype
        if mode in ARG_MODES:
            if mask is not None:
                fill = dtype.min if mode == "argmax" else dtype.max
                x = tf.where(mask, x, tf.fill(tf.shape(x), tf.constant(fill, dtype)))
            fn = tf.math.argmax if mode == "argmax" else tf.math.argmin
            y = fn(x, axis=axes[0], output_type=tf.int32)
            return tf.expand_dims(y, axes[0]) if keep else y
        if mask is None:
            fn = {
                "sum": tf.reduce_sum,
                "max": tf.reduce_max,
                "min": tf.reduce_min,
                "mean": tf.reduce_mean,
                "logsumexp": tf.reduce_logsumexp,
            }[mode]
            return fn(x, axis=axes, keepdims=keep)
        fmask = tf.cast(mask, dtype)
        count = tf.reduce_sum(fmask, axis=axes, keepdims=keep)
        some = count > 0
        zero = tf.zeros_like(count)
        if mode == "sum":
            return tf.reduce_sum(tf.where(mask, x, tf.zeros_like(x)), axis=axes, keepdims=keep)
        if mode == "mean":
            total = tf.reduce_sum(tf.where(mask, x, tf.zeros_like(x)), axis=axes, keepdims=keep)
            return total / tf.maximum(count, tf.ones_like(count))
        low, high = dtype.min, dtype.max
        if mode == "max":
            y = tf.reduce_max(
                tf.where(mask, x, tf.fill(tf.shape(x), tf.constant(low, dtype))),
                axis=axes,
                keepdims=keep,
            )
            return tf.where(some, y, zero)
        if mode == "min":
            y = tf.reduce_min(
                tf.where(mask, x, tf.fill(tf.shape(x), tf.constant(high, dtype))),
                axis=axes,
                keepdims=keep,
            )
            return tf.where(some, y, zero)
        # logsumexp
        masked = tf.where(mask, x, tf.fill(tf.shape(x), tf.constant(low, dtype)))
        m = tf.stop_gradient(tf.reduce_max(masked, axis=axes, keepdims=True))
        m = tf.where(tf.reduce_any(mask, axis=axes, keepdims=True), m, tf.zeros_like(m))
        e = tf.where(mask, tf.exp(x - m), tf.zeros_like(x))
        s = tf.reduce_sum(e, axis=axes, keepdims=True)
        y = tf.math.log(tf.where(s > 0, s, tf.ones_like(s))) + m
        if not keep:
            y = tf.squeeze(y, axis=axes)
        return tf.where(some, y, zero)
