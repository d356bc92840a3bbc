"""`gather`: slices of the input picked along `axis` by integer positions (RETURNN's GatherLayer).

`position` is a layer (int32, or class indices) or an int constant. The input's `axis` is
replaced by the position's own axes: with `x` [B, T, F] and `axis: T`,

- `position: 3` or a position [B] gives [B, F] (one frame per sequence),
- a position [B, T'] gives [B, T', F] (T' keeps its identity and lengths),
- a position `:i` inside a rec unit (the step, an int scalar) gives [B, F] per step.

Axes the input and the position share -- the batch axis and time axes (by identity), except
`axis` itself -- are gathered entry by entry ("batch" axes of the gather: `out[b, t'] =
x[b, pos[b, t']]`); a position without a batch axis is the same for every sequence. Static axes
of the position are always new axes of the output. Order of the output: the shared axes (batch
first), the input's axes before `axis`, the position's own axes, the input's axes after `axis`;
the feature axis is the last one (a static axis that ends up last is the feature axis, as in
`swap_axes`).

Out-of-range positions (netcompiler's definition; RETURNN leaves them to `tf.gather`, which
fails on the CPU and gives zeros on the GPU): a position outside `0 .. n-1`, where n is the
sequence's length for a time `axis` (its valid frames; padding is never read) and the size of a
static `axis`, gives zeros. `clip_to_valid: true` (RETURNN's option) clips the positions into
that range instead (a sequence of length 0 still gives zeros).
"""

from __future__ import annotations

from netcompiler.core.dims import (
    BATCH,
    FEATURE,
    SPATIAL,
    TIME,
    Dim,
    Shape,
    feature_dim,
    spatial_dim,
)
from netcompiler.core.layer_rule import LayerRule, NoStepGuess
from netcompiler.layers._axes import resolve_axis
from netcompiler.layers._util import check_n_out, src_desc


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shared(d: Dim, others) -> bool:
    """`d` (batch or time axis) is also an axis of `others`."""
    if d.kind == BATCH:
        return any(o.kind == BATCH for o in others)
    return d.kind == TIME and any(o is d for o in others)


class GatherRule(NoStepGuess, LayerRule):
    layer_class = "gather"
    layer_options = ("position",)

    @staticmethod
    def plan(ctx, src: Shape, pos: Shape):
        """(gather axis, shared input axes, shared position axes (same order), input axes
        before, position's own axes, input axes after, output dims)."""
        g = resolve_axis(ctx, src, ctx.opt("axis"), "axis")
        if src.dims[g].kind == BATCH:
            raise ctx.error(
                f"`gather` cannot gather along the batch axis of {src_desc(ctx)}",
                "axis",
                "shape.axis",
            )
        common_in = [
            i
            for i, d in enumerate(src.dims)
            if i != g and d.kind in (BATCH, TIME) and _shared(d, pos.dims)
        ]
        common_pos = []
        for i in common_in:
            d = src.dims[i]
            common_pos.append(
                next(
                    j
                    for j, p in enumerate(pos.dims)
                    if (p.kind == BATCH if d.kind == BATCH else p is d)
                )
            )
        own_pos = [j for j in range(len(pos.dims)) if j not in common_pos]
        rest = [i for i in range(len(src.dims)) if i != g and i not in common_in]
        before = [i for i in rest if i < g]
        after = [i for i in rest if i > g]
        dims = (
            [src.dims[i] for i in common_in]
            + [src.dims[i] for i in before]
            + [pos.dims[j] for j in own_pos]
            + [src.dims[i] for i in after]
        )
        return g, common_in, common_pos, before, own_pos, after, dims

    @staticmethod
    def order(src: Shape, dims: list[Dim]) -> list[int]:
        """Permutation of the gather's layout `dims` into the output's: batch first, the
        input's feature axis last."""
        perm = sorted(range(len(dims)), key=lambda k: 0 if dims[k].kind == BATCH else 1)
        feat = next((k for k in perm if src.feature is not None and dims[k] is src.feature), None)
        if feat is not None:
            perm = [k for k in perm if k != feat] + [feat]
        return perm

    @classmethod
    def out_shape(cls, src: Shape, dims: list[Dim]) -> Shape:
        """The output: `order`ed, the static axis that ends up last the feature axis (as in
        `swap_axes`), a feature axis elsewhere a static axis."""
        ordered = [dims[k] for k in cls.order(src, dims)]
        out = []
        for i, d in enumerate(ordered):
            last = i == len(ordered) - 1
            if d.kind == FEATURE and not last:
                d = spatial_dim(d.size)
            elif d.kind == SPATIAL and last and not src.sparse:
                d = feature_dim(d.size)
            out.append(d)
        return Shape(tuple(out), src.sparse_dim, src.dtype)

    def position_shape(self, ctx) -> Shape:
        value = ctx.opts.get("position")
        if value is None:
            raise ctx.error(
                "`gather` needs `position` (a layer of int positions or an int)",
                "position",
                "shape.missing-option",
            )
        if _is_int(value):
            if value < 0:
                raise ctx.error(
                    f"`position: {value}` must not be negative", "position", "shape.gather-position"
                )
            return Shape((), None, "int32")
        pos = ctx.ref("position")
        if pos is None:
            raise ctx.error(
                f"`position: {value}` is neither a layer nor an int",
                "position",
                "shape.gather-position",
            )
        if not (pos.sparse or pos.dtype in ("int32", "int64")):
            raise ctx.error(
                f"`position` `{ctx.ref_name('position')}` {pos} must hold integer "
                f"positions (int32 or class indices)",
                "position",
                "shape.dtype",
                hint="cast it: a `cast` layer with `dtype: int32`",
            )
        return pos

    def infer(self, ctx) -> Shape:
        src = ctx.source
        pos = self.position_shape(ctx)
        *_, dims = self.plan(ctx, src, pos)
        out = self.out_shape(src, dims)
        check_n_out(ctx, out)
        return out

    def call(self, ctx):
        import tensorflow as tf

        x, src = ctx.source, ctx.source_shape
        value = ctx.opts.get("position")
        if _is_int(value):
            pos, pos_shape = tf.constant(value, tf.int32), Shape((), None, "int32")
        else:
            pos, pos_shape = ctx.ref("position"), ctx.ref_shape("position")
        pos = tf.cast(pos, tf.int32)
        batch_in = next((i for i, d in enumerate(src.dims) if d.kind == BATCH), None)
        if batch_in is not None and not pos_shape.has_batch:
            # the same positions for every sequence: give them the batch axis (the valid range
            # of a time axis differs per sequence)
            pos = tf.broadcast_to(pos[None], tf.concat([[tf.shape(x)[batch_in]], tf.shape(pos)], 0))
            pos_shape = Shape((src.dims[batch_in],) + pos_shape.dims, None, pos_shape.dtype)
        g, common_in, common_pos, before, own_pos, after, dims = self.plan(ctx, src, pos_shape)
        params = tf.transpose(x, common_in + before + [g] + after)
        idx = tf.transpose(pos, common_pos + own_pos)  # [shared..., own...]
        n_shared = len(common_in)
        gdim = src.dims[g]
        # the valid range of each position: 0 .. n-1
        n = tf.shape(x)[g]
        if gdim.kind == TIME and batch_in is not None and ctx.has_lengths(gdim):
            lens = tf.minimum(ctx.lengths(gdim), n)  # [B]; batch is the first shared axis
            n = tf.reshape(lens, tf.concat([[-1], tf.ones([tf.rank(idx) - 1], tf.int32)], 0))
        if ctx.opt("clip_to_valid"):
            valid = tf.broadcast_to(n > 0, tf.shape(idx))
            safe = tf.minimum(tf.maximum(idx, 0), tf.maximum(n - 1, 0))
        else:
            valid = (idx >= 0) & (idx < n)
            safe = tf.where(valid, idx, tf.zeros_like(idx))
        out = tf.gather(params, safe, axis=n_shared + len(before), batch_dims=n_shared)
        # zeros where the position is out of range: valid [shared..., own...] -> output layout
        vshape = tf.concat(
            [
                tf.shape(valid)[:n_shared],
                tf.ones([len(before)], tf.int32),
                tf.shape(valid)[n_shared:],
                tf.ones([len(after)], tf.int32),
            ],
            0,
        )
        out = tf.where(tf.reshape(valid, vshape), out, tf.zeros_like(out))
        perm = self.order(src, dims)
        return out if perm == list(range(len(dims))) else tf.transpose(out, perm)
