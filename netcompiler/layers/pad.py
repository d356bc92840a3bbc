"""`pad`: pads `axes` by `padding` with `value` (RETURNN's PadLayer).

`padding`: an int (before and after every axis), `[before, after]` (every axis) or one
`[before, after]` per axis. `mode`: `constant` (with `value`), `reflect`, `symmetric`,
`replication` (the edge entry repeated).

- A static axis (or the feature axis) of size n becomes one of size `before + n + after`.
- A time axis becomes a new time axis (as RETURNN makes a new dim tag `before + T + after`)
  whose lengths are the old ones `+ before + after`. As RETURNN does with
  `handle_dynamic_dims` (default true, behaviour version >= 21), the `after` frames follow
  each sequence's own end: frame t of sequence b is `value` for t < before, the input frame
  t - before up to before + len[b], then `value` up to the new length. Padding a time axis
  after the end needs `mode: constant` (RETURNN: not implemented otherwise), and
  `handle_dynamic_dims: false` (padding after the padded frames) is not supported there.
"""

from __future__ import annotations

import math

from netcompiler.core.dims import BATCH, FEATURE, TIME, Shape, feature_dim, spatial_dim
from netcompiler.core.layer_rule import LayerRule, NoStepGuess
from netcompiler.layers._axes import resolve_axes
from netcompiler.layers._util import check_n_out, src_desc

MODES = ("constant", "reflect", "symmetric", "replication")


class PadRule(NoStepGuess, LayerRule):
    layer_class = "pad"

    @staticmethod
    def plan(ctx, src: Shape) -> list[tuple[int, int, int]]:
        """[(axis, before, after)] in the order of `axes`."""
        desc = ctx.opt("axes")
        axes = resolve_axes(ctx, src, desc, "axes")
        if not axes:
            raise ctx.error(
                f"`axes: {desc}` names no axis of {src_desc(ctx)}", "axes", "shape.axis"
            )
        padding = ctx.opt("padding")

        def pair(p):
            if (
                isinstance(p, (list, tuple))
                and len(p) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in p)
            ):
                return int(p[0]), int(p[1])
            raise ctx.error(
                f"`padding: {padding}`: expected an int, [before, after] or one "
                f"[before, after] per axis",
                "padding",
                "shape.pad",
            )

        if isinstance(padding, int) and not isinstance(padding, bool):
            pads = [(padding, padding)] * len(axes)
        elif (
            isinstance(padding, (list, tuple)) and padding and isinstance(padding[0], (list, tuple))
        ):
            if len(padding) != len(axes):
                raise ctx.error(
                    f"`padding` gives {len(padding)} (before, after) pairs for the "
                    f"{len(axes)} axes of `axes: {desc}`",
                    "padding",
                    "shape.pad",
                )
            pads = [pair(p) for p in padding]
        else:
            pads = [pair(padding)] * len(axes)
        out = []
        for i, (before, after) in zip(axes, pads):
            if before < 0 or after < 0:
                raise ctx.error(
                    f"`padding` must not be negative, got ({before}, {after})",
                    "padding",
                    "shape.pad",
                )
            if src.dims[i].kind == BATCH:
                raise ctx.error(
                    f"`pad` cannot pad the batch axis of {src_desc(ctx)}", "axes", "shape.axis"
                )
            out.append((i, before, after))
        return out

    def infer(self, ctx) -> Shape:
        src = ctx.source
        plan = self.plan(ctx, src)
        mode = str(ctx.opt("mode")).lower()
        if mode not in MODES:
            raise ctx.error(f"`mode: {mode}` is not one of {', '.join(MODES)}", "mode", "shape.pad")
        value = ctx.opt("value")
        if src.sparse or src.dtype.startswith("int"):
            if not (math.isfinite(value) and float(value) == int(value)):
                raise ctx.error(
                    f"`value: {value}` must be an integer for {src_desc(ctx)}", "value", "shape.pad"
                )
        dims = list(src.dims)
        for i, before, after in plan:
            d = src.dims[i]
            if d.kind == TIME:
                if not src.has_batch:
                    raise ctx.error(
                        f"padding a time axis needs a batch axis, got {src_desc(ctx)}",
                        "from",
                        "shape.no-batch",
                    )
                if after and mode != "constant":
                    raise ctx.error(
                        f"`mode: {mode}` cannot pad after the end of the time axis "
                        f"{d} (sequences end at different frames)",
                        "mode",
                        "shape.pad",
                        hint="use `mode: constant`, or pad only before",
                    )
                if after and not ctx.opt("handle_dynamic_dims"):
                    raise ctx.error(
                        "`handle_dynamic_dims: false` (padding after the padded "
                        "frames of a time axis) is not supported",
                        "handle_dynamic_dims",
                        "shape.unsupported",
                        hint="leave it out (true)",
                    )
                dims[i] = ctx.new_time_dim(f"{ctx.name}:{d.tag}" if len(plan) > 1 else None)
            else:
                size = d.size + before + after
                if (
                    mode in ("reflect",)
                    and max(before, after) > d.size - 1
                    or mode == "symmetric"
                    and max(before, after) > d.size
                ):
                    raise ctx.error(
                        f"`mode: {mode}` pads axis {d} of {src_desc(ctx)} by more "
                        f"than it has entries to mirror",
                        "padding",
                        "shape.pad",
                    )
                dims[i] = feature_dim(size) if d.kind == FEATURE else spatial_dim(size)
        out = Shape(tuple(dims), src.sparse_dim, src.dtype)
        check_n_out(ctx, out)
        return out

    def call(self, ctx):
        import tensorflow as tf

        x = ctx.source
        shape = ctx.source_shape
        plan = self.plan(ctx, shape)
        mode = str(ctx.opt("mode")).lower()
        value = tf.cast(ctx.opt("value"), x.dtype)
        rank = len(shape.dims)
        # mask the input's padded frames first (they would otherwise be mirrored / kept)
        for i, _before, _after in plan:
            d = shape.dims[i]
            if d.kind == TIME and ctx.has_lengths(d) and mode == "constant":
                x = tf.where(ctx.time_mask(shape, d, x, axis=i), x, tf.fill(tf.shape(x), value))
        for i, before, after in plan:
            if not before and not after:
                continue
            if mode == "replication":
                parts = []
                if before:
                    edge = tf.gather(x, [0], axis=i)
                    parts.append(tf.repeat(edge, before, axis=i))
                parts.append(x)
                if after:
                    edge = tf.gather(x, [tf.shape(x)[i] - 1], axis=i)
                    parts.append(tf.repeat(edge, after, axis=i))
                x = tf.concat(parts, axis=i)
            else:
                paddings = [[0, 0]] * rank
                paddings[i] = [before, after]
                x = tf.pad(
                    x,
                    paddings,
                    mode=mode.upper(),
                    constant_values=value if mode == "constant" else 0,
                )
        for i, before, after in plan:
            d = shape.dims[i]
            if d.kind != TIME:
                continue
            new_len = ctx.lengths(d) + before + after
            ctx.set_lengths(ctx.out_shape.dims[i], new_len)
        return x
