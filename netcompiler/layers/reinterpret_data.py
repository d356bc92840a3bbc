"""`reinterpret_data`: the same values with a new interpretation.

- `set_sparse: true`: integer data without a feature axis becomes class indices (classes from
  `set_sparse_dim`, or kept if already sparse); `set_sparse: false`: class indices become plain
  int32 data (`[B, T(data)] int32`).
- `set_sparse_dim: N`: the number of classes of sparse data becomes N.
- `increase_sparse_dim: k`: the number of classes grows by k (e.g. after shifting labels).
- `size_base: LAYER`: the input's time axis is replaced by that layer's time axis (its
  lengths); the data is padded/cut to that layer's padded length.
- `set_axes` (minimal): `{T: AXIS}` makes the named axis the first time axis (a static axis
  becomes a new time axis whose lengths are its size); `{F: AXIS}` makes the named static axis
  the feature axis (moved last; the old feature axis becomes a static axis); `{F: null}` turns
  the feature axis into a static axis.
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
from netcompiler.core.layer_rule import LayerRule
from netcompiler.layers._axes import resolve_axis
from netcompiler.layers._util import check_n_out


class ReinterpretDataRule(LayerRule):
    layer_class = "reinterpret_data"
    layer_options = ("size_base",)

    def infer(self, ctx) -> Shape:
        out = self._shape(ctx, ctx.source, ctx.ref("size_base"))
        check_n_out(ctx, out)
        return out

    def _shape(self, ctx, src: Shape, base: Shape | None) -> Shape:
        names = ", ".join(ctx.source_names)
        dims, _ = plan_axes(ctx, src, ctx.opt("set_axes") or {}, names)
        if base is not None:
            dims = time_of_size_base(ctx, dims, src, base, names)
        sparse_dim, dtype = set_sparse_interpretation(ctx, dims, src, names)
        sparse_dim = resized_sparse_dim(ctx, sparse_dim, src, names)
        return Shape(tuple(dims), sparse_dim, dtype)

    def call(self, ctx):
        import tensorflow as tf

        x = ctx.source
        src = ctx.source_shape
        out = ctx.out_shape
        set_axes = ctx.opt("set_axes") or {}
        if set_axes:
            _, perm = plan_axes(ctx, src, set_axes, ctx.name)
            if perm != list(range(len(perm))):
                x = tf.transpose(x, perm)
            for j, d in enumerate(out.dims):
                if d.kind == TIME and not ctx.has_lengths(d):
                    # a static axis turned into a time axis: every frame valid
                    b = next(k for k, e in enumerate(out.dims) if e.kind == BATCH)
                    ctx.set_lengths(d, tf.fill([tf.shape(x)[b]], tf.shape(x)[j]))
        base_shape = ctx.ref_shape("size_base")
        if base_shape is not None:
            base = ctx.ref("size_base")
            t_out = out.index(base_shape.time)
            n = tf.shape(base)[base_shape.index(base_shape.time)]
            cur = tf.shape(x)[t_out]
            pad = [[0, 0]] * len(out.dims)
            pad[t_out] = [0, tf.maximum(n - cur, 0)]
            x = tf.pad(x, pad)
            begin = [0] * len(out.dims)
            size = [-1] * len(out.dims)
            size[t_out] = n
            x = tf.slice(x, begin, size)
        want = tf.as_dtype(out.dtype)
        if x.dtype != want:
            x = tf.cast(x, want)
        return x


def plan_axes(ctx, shape: Shape, set_axes: dict, names: str) -> tuple[list[Dim], list[int]]:
    """The output axes after `set_axes`, and for each the index of the input axis it comes from."""
    for key in set_axes:
        if key not in ("T", "F"):
            raise ctx.error(
                f"`set_axes`: unsupported key `{key}` (supported: T, F)",
                "set_axes",
                "shape.set-axes",
            )
    dims = list(shape.dims)
    idx = list(range(len(dims)))
    if "F" in set_axes:
        desc = set_axes["F"]
        if shape.sparse:
            raise ctx.error(
                f"`set_axes: {{F: ...}}` on sparse input `{names}` {shape}",
                "set_axes",
                "shape.set-axes",
            )
        if dims and dims[-1].kind == FEATURE:
            dims[-1] = spatial_dim(dims[-1].size)
        if desc is not None:
            i = resolve_axis(ctx, Shape(tuple(dims), None, shape.dtype), desc, "set_axes")
            d = dims[i]
            if d.kind != SPATIAL:
                raise ctx.error(
                    f"`set_axes: {{F: {desc}}}` names {d} of `{names}` {shape}; "
                    f"only a static axis can become the feature axis",
                    "set_axes",
                    "shape.set-axes",
                )
            dims.append(feature_dim(dims.pop(i).size))
            idx.append(idx.pop(i))
    if "T" in set_axes:
        desc = set_axes["T"]
        cur = Shape(tuple(dims), shape.sparse_dim, shape.dtype)
        i = resolve_axis(ctx, cur, desc, "set_axes")
        d = dims[i]
        if d.kind in (BATCH, FEATURE):
            raise ctx.error(
                f"`set_axes: {{T: {desc}}}` names {d} of `{names}` {cur}; only a "
                f"time or static axis can be the time axis",
                "set_axes",
                "shape.set-axes",
            )
        if d.kind == SPATIAL:
            d = ctx.new_time_dim()
        dims.pop(i)
        j = idx.pop(i)
        at = next((k for k, x in enumerate(dims) if x.kind != BATCH), len(dims))
        dims.insert(at, d)
        idx.insert(at, j)
    return dims, idx


def time_of_size_base(ctx, dims: list[Dim], src: Shape, base: Shape, names: str) -> list[Dim]:
    """`size_base`: the output axes `dims` with their time axis replaced by the time axis of
    `base` (the `size_base` layer's shape); raises ShapeError if either has none, or if the new
    time axis is already another axis of the input."""
    time = next((d for d in dims if d.kind == TIME), None)
    if time is None:
        raise ctx.error(
            f"`size_base`: input `{names}` {src} has no time axis to replace",
            "size_base",
            "shape.size-base",
        )
    if base.time is None:
        raise ctx.error(
            f"`size_base` `{ctx.ref_name('size_base')}` {base} has no time axis",
            "size_base",
            "shape.size-base",
        )
    if base.time is not time and any(d is base.time for d in dims):
        raise ctx.error(
            f"`size_base` `{ctx.ref_name('size_base')}` {base}: its time axis "
            f"{base.time} is already another axis of `{names}` {src}",
            "size_base",
            "shape.size-base",
        )
    return [base.time if d is time else d for d in dims]


def set_sparse_interpretation(
    ctx, dims: list[Dim], src: Shape, names: str
) -> tuple[int | None, str]:
    """`set_sparse`: the (number of classes, dtype) of the output before `set_sparse_dim` and
    `increase_sparse_dim` apply; `set_sparse: true` on data without classes yet gives 0
    classes (`set_sparse_dim`, required then, sets them)."""
    sparse_dim = src.sparse_dim
    dtype = src.dtype
    set_sparse = ctx.opt("set_sparse")
    if set_sparse is True:
        if dims and dims[-1].kind == FEATURE:
            raise ctx.error(
                f"`set_sparse: true`: input `{names}` {src} has a feature axis",
                "set_sparse",
                "shape.sparse",
                hint="class indices have no feature axis; remove it first "
                "(e.g. `set_axes: {F: null}` or `squeeze`)",
            )
        if dtype not in ("int32", "int64"):
            raise ctx.error(
                f"`set_sparse: true` needs integer data, but `{names}` {src} is {dtype}",
                "set_sparse",
                "shape.sparse",
                hint="cast with `eval` and tf.cast(source(0), tf.int32)",
            )
        if sparse_dim is None and not ctx.opt("set_sparse_dim"):
            raise ctx.error(
                "`set_sparse: true` needs `set_sparse_dim` (the number of classes)",
                "set_sparse_dim",
                "shape.sparse",
            )
        return sparse_dim or 0, "int32"
    if set_sparse is False:
        return None, "int32" if src.sparse else dtype
    return sparse_dim, dtype


def resized_sparse_dim(ctx, sparse_dim: int | None, src: Shape, names: str) -> int | None:
    """The number of classes after `set_sparse_dim` (replaces it) and `increase_sparse_dim`
    (adds to it); both need sparse data (raises ShapeError on dense input)."""
    set_sparse_dim = ctx.opt("set_sparse_dim")
    if set_sparse_dim not in (None, False):
        if sparse_dim is None:
            raise ctx.error(
                f"`set_sparse_dim` on dense input `{names}` {src}",
                "set_sparse_dim",
                "shape.sparse",
                hint="add `set_sparse: true` for integer data",
            )
        sparse_dim = int(set_sparse_dim)
    inc = ctx.opt("increase_sparse_dim") or 0
    if inc:
        if sparse_dim is None:
            raise ctx.error(
                f"`increase_sparse_dim` on dense input `{names}` {src}",
                "increase_sparse_dim",
                "shape.sparse",
            )
        sparse_dim += int(inc)
        if sparse_dim < 1:
            raise ctx.error(
                f"`increase_sparse_dim: {inc}` leaves {sparse_dim} classes",
                "increase_sparse_dim",
                "shape.sparse",
            )
    return sparse_dim
