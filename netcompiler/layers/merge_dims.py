"""`merge_dims`: merges static axes into one (in input order, the first axis outermost).

`[B, T, S=3, S=4, F=8]` with `axes: [dim:3, dim:4]` -> `[B, T, S=12, F=8]`; when the feature
axis is among the merged axes the result is the feature axis: `[B, S=3, F=8]` with
`axes: [static, F]` -> `[B, F=24]`. Dynamic axes (batch, time) cannot be merged.
"""

from __future__ import annotations

from netcompiler.core.dims import BATCH, FEATURE, TIME, Shape, feature_dim, spatial_dim
from netcompiler.core.layer_rule import LayerRule, NoStepGuess
from netcompiler.layers._axes import resolve_axes
from netcompiler.layers._util import check_n_out, src_desc


def merged_shape(
    ctx, src: Shape, axes: list[int], option: str, layer_class: str = "merge_dims"
) -> tuple[Shape, list[int]]:
    """Output shape of merging `axes` (indices into src.dims) and the transpose permutation
    that makes them adjacent at the merged position (for the builder)."""
    axes = sorted(set(axes))
    if not axes:
        raise ctx.error(f"`{option}` names no axis of {src_desc(ctx)}", option, "shape.axis")
    for i in axes:
        d = src.dims[i]
        if d.kind in (BATCH, TIME):
            raise ctx.error(
                f"`{layer_class}` merges static axes only, but `{option}` names the "
                f"dynamic axis {d} of {src_desc(ctx)}",
                option,
                "shape.merge-dynamic",
                hint="use `split_dims`/`window`/`conv` to change a time axis",
            )
    size = 1
    for i in axes:
        size *= src.dims[i].size
    to_feature = any(src.dims[i].kind == FEATURE for i in axes)
    rest = [i for i in range(len(src.dims)) if i not in axes]
    if to_feature:
        perm = rest + axes
        dims = tuple(src.dims[i] for i in rest) + (feature_dim(size),)
    else:
        first = axes[0]
        head = [i for i in rest if i < first]
        tail = [i for i in rest if i > first]
        perm = head + axes + tail
        dims = (
            tuple(src.dims[i] for i in head)
            + (spatial_dim(size),)
            + tuple(src.dims[i] for i in tail)
        )
    return Shape(dims, src.sparse_dim, src.dtype), perm


def merge_call(x, shape: Shape, perm: list[int], out: Shape):
    import tensorflow as tf

    if perm != list(range(len(perm))):
        x = tf.transpose(x, perm)
    dyn = tf.shape(x)
    sizes = []
    for d in out.dims:
        sizes.append(tf.constant(d.size) if not d.dynamic else None)
    # dynamic axes keep their run-time size; they are never merged, so take them in order
    dynamic_src = [j for j, p in enumerate(perm) if shape.dims[p].dynamic]
    it = iter(dynamic_src)
    sizes = [s if s is not None else dyn[next(it)] for s in sizes]
    return tf.reshape(x, tf.stack(sizes))


class MergeDimsRule(NoStepGuess, LayerRule):
    layer_class = "merge_dims"

    @staticmethod
    def axes(ctx, src: Shape) -> list[int]:
        return resolve_axes(ctx, src, ctx.opt("axes"), "axes")

    def infer(self, ctx) -> Shape:
        src = ctx.source
        out, _ = merged_shape(ctx, src, self.axes(ctx, src), "axes", self.layer_class)
        check_n_out(ctx, out)
        return out

    def call(self, ctx):
        shape = ctx.source_shape
        _, perm = merged_shape(ctx, shape, self.axes(ctx, shape), "axes", self.layer_class)
        return merge_call(ctx.source, shape, perm, ctx.out_shape)
