"""`dot`: batched contraction of two inputs (semantics.md "dot").

`red1`/`red2` name the axes summed over (pairwise; time axes must be the same axis, static axes
the same size), `var1`/`var2` the axes kept from each input (null/absent: none). The remaining
axes are shared: batch, and any axis present in both inputs (same identity, or same size for
static axes), e.g. heads or a decoder time axis. A remaining axis present in only one input is
broadcast over (kept; this is what a per-step `dot` moved out of a loop sees).

Output axes: batch, the shared axes (input-1 order), the broadcast axes (input 1, then input
2), then the `var1` axes, then the `var2` axes. Feature axis: the feature axis of input 2 if
`var2` keeps it, else that of input 1 if `var1` keeps it, else a shared feature axis; it is
placed last. Any other kept feature axis becomes a static axis; with no kept feature axis the
output has none (e.g. `[B, T(data)]`). A plain sum, no scaling; padded frames of a reduced time
axis contribute 0. `add_var2_if_empty` (RETURNN before behaviour version 3): with no `var2` axis,
an axis of size 1 is appended as the feature axis (`[B, T(data), F=1]`; a kept feature axis
becomes a static axis).
"""

from __future__ import annotations

from dataclasses import dataclass

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
from netcompiler.layers._axes import resolve_axes
from netcompiler.layers._util import zero_padded


def static(d: Dim) -> bool:
    return d.kind in (SPATIAL, FEATURE)


def same_axis(a: Dim, b: Dim) -> bool:
    """Axis matching across inputs: identity for dynamic axes, size for static ones (a heads
    axis may be the feature axis of one input and a static axis of the other)."""
    if a is b:
        return True
    if a.kind == BATCH or b.kind == BATCH:
        return a.kind == b.kind
    if static(a) and static(b):
        return a.size == b.size
    return False


@dataclass
class DotPlan:
    """How the two inputs' axes map to the output (indices into each input's dims)."""

    red: list[tuple[int, int]]  # reduced pairs
    shared: list[tuple[int, int]]  # (i1, i2), batch first
    only1: list[int]  # broadcast axes of input 1
    only2: list[int]
    var1: list[int]
    var2: list[int]
    out_dims: tuple[Dim, ...]
    # output position of each output axis's origin: ("s", k) / ("1", i) / ("2", i)
    out_origin: list[tuple[str, int]]


def dot_plan(ctx, shapes, names) -> DotPlan:
    """`ctx` needs `opt` and `error` (a ShapeContext, or the builder's CallContext)."""
    if len(shapes) != 2:
        raise ctx.error(
            f"`dot` needs exactly two inputs in `from`, got {len(shapes)}", "from", "shape.inputs"
        )
    s1, s2 = shapes
    for i, s in enumerate((s1, s2)):
        if s.sparse:
            raise ctx.error(
                f"`dot` needs dense inputs, but {_describe(shapes, names, i)} is sparse",
                "from",
                "shape.sparse-input",
            )
    red1, red2, var1, var2 = _axis_options(ctx, shapes, names)
    _check_reduced_pairs(ctx, shapes, names, red1, red2)
    rest1 = [i for i in range(s1.ndim) if i not in red1 and i not in var1]
    rest2 = [i for i in range(s2.ndim) if i not in red2 and i not in var2]
    shared = _shared_axes(s1, s2, rest1, rest2)
    used1, used2 = {p[0] for p in shared}, {p[1] for p in shared}
    only1 = [i for i in rest1 if i not in used1]
    only2 = [i for i in rest2 if i not in used2]
    origin = (
        [("s", k) for k in range(len(shared))]
        + [("1", i) for i in only1]
        + [("2", i) for i in only2]
        + [("1", i) for i in var1]
        + [("2", i) for i in var2]
    )
    origin, dims = _feature_last(s1, s2, shared, var1, var2, origin)
    return DotPlan(list(zip(red1, red2)), shared, only1, only2, var1, var2, dims, origin)


def _describe(shapes, names, i: int) -> str:
    """Input `i` as error messages name it: its layer and its shape."""
    return f"`{names[i]}` {shapes[i]}"


def _axis_options(ctx, shapes, names):
    """`red1`, `red2`, `var1`, `var2` as axis indices; none may name the batch axis, and no
    axis may be both reduced and kept."""
    s1, s2 = shapes
    red1 = resolve_axes(ctx, s1, ctx.opt("red1"), "red1")
    red2 = resolve_axes(ctx, s2, ctx.opt("red2"), "red2")
    var1 = [] if ctx.opt("var1") is None else resolve_axes(ctx, s1, ctx.opt("var1"), "var1")
    var2 = [] if ctx.opt("var2") is None else resolve_axes(ctx, s2, ctx.opt("var2"), "var2")
    for k, (s, red, var) in enumerate(((s1, red1, var1), (s2, red2, var2)), start=1):
        for opt, idx in ((f"red{k}", red), (f"var{k}", var)):
            for i in idx:
                if s.dims[i].kind == BATCH:
                    raise ctx.error(
                        f"`{opt}` names the batch axis of {_describe(shapes, names, k - 1)}",
                        opt,
                        "shape.axis",
                    )
        both = [i for i in var if i in red]
        if both:
            raise ctx.error(
                f"`red{k}` and `var{k}` both name axis {s.dims[both[0]]} of "
                f"{_describe(shapes, names, k - 1)}",
                f"var{k}",
                "shape.axis",
            )
    return red1, red2, var1, var2


def _check_reduced_pairs(ctx, shapes, names, red1: list[int], red2: list[int]) -> None:
    """The reduced axes pair up: as many in each input, each pair the same axis."""
    s1, s2 = shapes
    if len(red1) != len(red2):
        raise ctx.error(
            f"`red1` names {len(red1)} axes of {_describe(shapes, names, 0)} but `red2` names "
            f"{len(red2)} of {_describe(shapes, names, 1)}",
            "red2",
            "shape.dot-reduce",
        )
    for i1, i2 in zip(red1, red2):
        a, b = s1.dims[i1], s2.dims[i2]
        ok = (a is b) if (a.kind == TIME or b.kind == TIME) else same_axis(a, b)
        if not ok:
            why = (
                "are different time axes" if a.kind == TIME and b.kind == TIME else "differ in size"
            )
            raise ctx.error(
                f"reduced axes {a} of {_describe(shapes, names, 0)} and {b} of "
                f"{_describe(shapes, names, 1)} {why}",
                "red2",
                "shape.dot-reduce",
                hint="the summed-over axes of both inputs must be the same axis",
            )


def _shared_axes(s1: Shape, s2: Shape, rest1: list[int], rest2: list[int]):
    """(i1, i2) pairs of the remaining axes present in both inputs, batch first: each axis of
    input 1 takes the first unmatched axis of input 2 that is the same axis."""
    shared: list[tuple[int, int]] = []
    used2: set[int] = set()
    for i1 in rest1:
        for i2 in rest2:
            if i2 not in used2 and same_axis(s1.dims[i1], s2.dims[i2]):
                shared.append((i1, i2))
                used2.add(i2)
                break
    shared.sort(key=lambda p: 0 if s1.dims[p[0]].kind == BATCH else 1)
    return shared


def _feature_last(s1: Shape, s2: Shape, shared, var1, var2, origin):
    """The output axes' origins with that of the output's feature axis (`var2`'s, else
    `var1`'s, else the one shared feature axis) moved last, and the output's dims (every other
    kept feature axis becomes a static one)."""

    def dim_of(o):
        kind, i = o
        if kind == "s":
            return s1.dims[shared[i][0]]
        return (s1 if kind == "1" else s2).dims[i]

    feat = next((("2", i) for i in var2 if s2.dims[i].kind == FEATURE), None) or next(
        (("1", i) for i in var1 if s1.dims[i].kind == FEATURE), None
    )
    if feat is None:
        shared_feats = [o for o in origin if o[0] == "s" and dim_of(o).kind == FEATURE]
        if len(shared_feats) == 1:
            feat = shared_feats[0]
    if feat is not None:
        origin = [o for o in origin if o != feat] + [feat]
    dims = []
    for o in origin:
        d = dim_of(o)
        if d.kind == FEATURE and o != feat:
            d = spatial_dim(d.size)
        dims.append(d)
    return origin, tuple(dims)


class DotRule(LayerRule):
    layer_class = "dot"
    concat_sources = False

    def infer(self, ctx) -> Shape:
        plan = dot_plan(ctx, ctx.sources, ctx.source_names)
        dims = plan.out_dims
        if ctx.opt("add_var2_if_empty") and not plan.var2:
            # RETURNN: a dummy var2 axis of size 1 at the end, the (new) feature axis
            dims = tuple(spatial_dim(d.size) if d.kind == FEATURE else d for d in dims)
            dims += (feature_dim(1),)
        return Shape(dims)

    def call(self, ctx):
        import tensorflow as tf

        from netcompiler.backend import compute

        s1, s2 = ctx.source_shapes
        plan = dot_plan(ctx, ctx.source_shapes, ctx.source_names)
        a, b = ctx.sources
        # padded frames of a reduced time axis contribute 0 (zeroed on both sides)
        for i1, i2 in plan.red:
            d = s1.dims[i1]
            if d.kind == TIME and ctx.has_lengths(d):
                a = zero_padded(ctx, a, s1, d)
                b = zero_padded(ctx, b, s2, s2.dims[i2])
        letters = iter("abcdefghijklmnopqrstuvwxyz")
        l1: list = [None] * s1.ndim
        l2: list = [None] * s2.ndim
        for i1, i2 in plan.red + plan.shared:
            l1[i1] = l2[i2] = next(letters)
        for i in plan.only1 + plan.var1:
            l1[i] = next(letters)
        for i in plan.only2 + plan.var2:
            l2[i] = next(letters)
        out = "".join(
            l1[plan.shared[i][0]] if k == "s" else (l1 if k == "1" else l2)[i]
            for k, i in plan.out_origin
        )
        y = compute.einsum(f"{''.join(l1)},{''.join(l2)}->{out}", a, b)
        if ctx.opt("add_var2_if_empty") and not plan.var2:
            y = tf.expand_dims(y, -1)
        return y
