"""`split`: one static axis (`axis`, default the feature axis) cut into `num_splits` equal parts
or parts of `size_splits` (RETURNN's SplitLayer). The layer itself is its input unchanged; the
parts are its sub-outputs `NAME/0`, `NAME/1`, ... (synthetic layers of the same network, made
by `netcompiler.frontend.network` from the options; read them as any layer: `from: NAME/1`,
`base:NAME/0`). In part i the axis has the size of the part (the feature axis stays the
feature axis). RETURNN's `out_dims` (dim tags) is not offered.
"""

from __future__ import annotations

from netcompiler.core.dims import FEATURE, SPATIAL, Shape, feature_dim, spatial_dim
from netcompiler.core.layer_rule import LayerRule, NoStepGuess
from netcompiler.layers._axes import resolve_axis
from netcompiler.layers._util import src_desc

#: the internal option of a synthetic part layer `<split>/<i>`: its index
PART = "_part"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def num_parts(opts: dict) -> int:
    """The number of sub-outputs the options ask for (0 when they are malformed)."""
    n, sizes = opts.get("num_splits"), opts.get("size_splits")
    if _is_int(n) and n > 0:
        return n
    if isinstance(sizes, list) and sizes and all(_is_int(s) for s in sizes):
        return len(sizes)
    return 0


class SplitRule(NoStepGuess, LayerRule):
    layer_class = "split"

    def sub_outputs(self, local: str, opts: dict) -> list[tuple[str, dict]]:
        """The parts `NAME/0`, `NAME/1`, ...: the split options and the part's index."""
        parts = []
        for i in range(num_parts(opts)):
            part_opts = {
                k: v for k, v in opts.items() if k in ("class", "axis", "num_splits", "size_splits")
            }
            part_opts.update({"from": local, PART: i})
            parts.append((f"{local}/{i}", part_opts))
        return parts

    @staticmethod
    def plan(ctx, src: Shape) -> tuple[int, list[int]]:
        """(axis, part sizes)."""
        desc = ctx.opt("axis")
        i = resolve_axis(ctx, src, "F" if desc is None else desc, "axis")
        d = src.dims[i]
        if d.kind not in (SPATIAL, FEATURE):
            raise ctx.error(
                f"`split` needs a static axis, but `axis: {desc or 'F'}` is {d} of {src_desc(ctx)}",
                "axis",
                "shape.axis",
                hint="a time axis has lengths per sequence: use `slice` or `split_dims`",
            )
        n, sizes = ctx.opts.get("num_splits"), ctx.opts.get("size_splits")
        if n is not None and sizes is not None:
            raise ctx.error(
                "give either `num_splits` or `size_splits`, not both", "size_splits", "shape.split"
            )
        if n is None and sizes is None:
            raise ctx.error(
                "`split` needs `num_splits` or `size_splits`", None, "shape.missing-option"
            )
        if n is not None:
            if d.size % n:
                raise ctx.error(
                    f"`num_splits: {n}` does not divide the {d.size} entries of "
                    f"axis {d} of {src_desc(ctx)}",
                    "num_splits",
                    "shape.split",
                )
            return i, [d.size // n] * n
        if sum(sizes) != d.size:
            raise ctx.error(
                f"`size_splits: {sizes}` sums to {sum(sizes)}, but axis {d} of "
                f"{src_desc(ctx)} has {d.size} entries",
                "size_splits",
                "shape.split",
            )
        return i, list(sizes)

    def infer(self, ctx) -> Shape:
        src = ctx.source
        axis, sizes = self.plan(ctx, src)
        part = ctx.opts.get(PART)
        if part is None:
            return src  # the layer itself: its input
        d = src.dims[axis]
        dims = list(src.dims)
        dims[axis] = feature_dim(sizes[part]) if d.kind == FEATURE else spatial_dim(sizes[part])
        return Shape(tuple(dims), src.sparse_dim, src.dtype)

    def call(self, ctx):
        import tensorflow as tf

        part = ctx.opts.get(PART)
        if part is None:
            return ctx.source
        axis, sizes = self.plan(ctx, ctx.source_shape)
        start = sum(sizes[:part])
        return tf.gather(ctx.source, tf.range(start, start + sizes[part]), axis=axis)
