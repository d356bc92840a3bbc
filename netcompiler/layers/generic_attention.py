"""`generic_attention`: weighted sum of `base` over its time axis (semantics.md).

`out[b, (extra), f] = sum_j weights[b, j, (extra)] * base[b, j, (extra), f]`. `weights` must
contain base's time axis (the same identity). Base's other non-feature axes are matched to
weights axes (time axes by identity, static axes by size); with `auto_squeeze`, weight axes of
size 1 that match nothing are squeezed away. Output: the weights' remaining axes (a feature
axis among them becomes a static axis) + base's feature axis. No `from`, no masking.
"""

from __future__ import annotations

from dataclasses import dataclass

from netcompiler.core.dims import BATCH, FEATURE, TIME, Dim, Shape, spatial_dim
from netcompiler.core.layer_rule import LayerRule
from netcompiler.layers.dot import same_axis


@dataclass
class GenericPlan:
    w_time: int  # index of the attended axis in weights
    b_time: int  # ... in base
    matched: dict[int, int]  # base axis index -> weights axis index (batch and extra axes)
    squeezed: list[int]  # weights axes squeezed away
    kept: list[int]  # weights axes kept, in order
    out_dims: tuple[Dim, ...]


def generic_plan(
    ctx, weights: Shape, base: Shape, wname: str, bname: str, auto_squeeze: bool
) -> GenericPlan:
    both = f"`weights` `{wname}` {weights} and `base` `{bname}` {base}"
    if weights.sparse or base.sparse or base.feature is None:
        raise ctx.error(
            f"`generic_attention` needs dense weights and a base with a feature axis: {both}",
            "base" if base.sparse or base.feature is None else "weights",
            "shape.generic-attention",
        )
    b_times = [i for i, d in enumerate(base.dims) if d.kind == TIME]
    common = [i for i in b_times if weights.has(base.dims[i])]
    if not common:
        what = (
            f"base's time axis {base.dims[b_times[0]]}"
            if b_times
            else "a time axis of base (base has none)"
        )
        raise ctx.error(
            f"the weights must contain {what}: {both}",
            "weights",
            "shape.generic-attention",
            hint="the weights usually come from `softmax_over_spatial` over the same "
            "time axis as `base`",
        )
    b_time = common[0]
    w_time = weights.index(base.dims[b_time])
    matched: dict[int, int] = {}
    used = {w_time}
    for i, d in enumerate(base.dims):
        if i == b_time or d is base.feature:
            continue
        j = next((j for j, e in enumerate(weights.dims) if j not in used and same_axis(d, e)), None)
        if j is None:
            raise ctx.error(
                f"axis {d} of base is not in the weights: {both}",
                "weights",
                "shape.generic-attention",
                hint="every non-feature axis of base (batch, heads, ...) must also be "
                "an axis of the weights",
            )
        matched[i] = j
        used.add(j)
    squeezed = [
        j
        for j, e in enumerate(weights.dims)
        if auto_squeeze and j not in used and e.kind != TIME and e.size == 1
    ]
    kept = [j for j in range(weights.ndim) if j != w_time and j not in squeezed]
    dims = []
    for j in kept:
        e = weights.dims[j]
        dims.append(spatial_dim(e.size) if e.kind == FEATURE else e)
    if not any(d.kind == BATCH for d in dims) and base.has_batch:
        raise ctx.error(
            f"the weights have no batch axis: {both}", "weights", "shape.generic-attention"
        )
    return GenericPlan(w_time, b_time, matched, squeezed, kept, tuple(dims) + (base.feature,))


class GenericAttentionRule(LayerRule):
    layer_class = "generic_attention"
    layer_options = ("base", "weights")
    concat_sources = False
    default_from = None

    def infer(self, ctx) -> Shape:
        if ctx.sources:
            raise ctx.error(
                f"`generic_attention` takes no `from` (got `{', '.join(ctx.source_names)}`); its "
                f"inputs are `weights` and `base`",
                "from",
                "shape.inputs",
                hint="write `from: []` or leave `from` out",
            )
        weights = ctx.require_ref("weights")
        base = ctx.require_ref("base")
        plan = generic_plan(
            ctx,
            weights,
            base,
            ctx.ref_name("weights"),
            ctx.ref_name("base"),
            bool(ctx.opt("auto_squeeze")),
        )
        return Shape(plan.out_dims)

    def guess_step_shape(self, ctx):

        base = ctx.known_ref("base")
        if base is None or base.time is None or base.feature is None:
            return None
        return Shape(tuple(d for d in base.dims if d is not base.time))

    def call(self, ctx):
        import tensorflow as tf

        from netcompiler.backend import compute

        wshape, bshape = ctx.ref_shape("weights"), ctx.ref_shape("base")
        plan = generic_plan(ctx, wshape, bshape, "weights", "base", bool(ctx.opt("auto_squeeze")))
        w, base = ctx.ref("weights"), ctx.ref("base")
        letters = iter("abcdefghijklmnopqrstuvwxyz")
        lw = [next(letters) for _ in wshape.dims]
        lb: list = [None] * bshape.ndim
        lb[plan.b_time] = lw[plan.w_time]
        for i, j in plan.matched.items():
            lb[i] = lw[j]
        feat = bshape.dims.index(bshape.feature)
        lb[feat] = next(letters)
        out = "".join(lw[j] for j in plan.kept) + lb[feat]
        if plan.squeezed:
            w = tf.squeeze(w, axis=plan.squeezed)
            lw = [c for j, c in enumerate(lw) if j not in plan.squeezed]
        return compute.einsum(f"{''.join(lw)},{''.join(lb)}->{out}", w, base)
