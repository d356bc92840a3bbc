"""`softmax_over_spatial`: softmax over a time axis, padded frames masked (semantics.md).

Same axes as the input. Order: mask (lengths, optional window) -> times `energy_factor` ->
softmax over the axis; masked entries come out exactly 0 (`log_space`: log-softmax, masked
entries the dtype's lowest value).
"""
from __future__ import annotations

from ..dims import BATCH, TIME, Shape
from .base import LayerRule
from ._axes import resolve_axis


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
                f"`{', '.join(ctx.source_names)}` {shape}", "from", "shape.no-time",
                hint="set `axis` to the axis to normalise over")
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
            raise ctx.error(f"`softmax_over_spatial` needs dense energies, but input "
                            f"`{', '.join(ctx.source_names)}` {src}", "from",
                            "shape.sparse-input")
        softmax_axis(ctx, src)
        start = ctx.opts.get("window_start")
        if start is not None:
            if ctx.opt("window_size") is None:
                raise ctx.error("`window_start` needs `window_size`", "window_size",
                                "shape.missing-option")
            ws = ctx.ref("window_start")
            if ws is not None:
                ok = ws.has_batch and all(d.kind == BATCH or d.size == 1 for d in ws.dims)
                if not ok:
                    raise ctx.error(
                        f"`window_start` `{ctx.ref_name('window_start')}` {ws}, but "
                        f"`{ctx.name}` needs one start frame per sequence: [B] or [B, F=1]",
                        "window_start", "shape.window-start")
        elif ctx.opts.get("window_size") is not None:
            raise ctx.error("`window_size` needs `window_start`", "window_start",
                            "shape.missing-option")
        return src

