"""`relative_positional_encoding`: the `key_shift` table of `self_attention` (semantics.md).

`out[i, j] = encoding_matrix[clip(j - i, -c, c) + c]`: outside a rec unit `[T, T, F=n_out]`
(both axes the input's time axis, no batch); inside a rec unit at step t `[S=1, T(<loop>),
F=n_out]` (query i = t, keys 0..t). Variable `encoding_matrix: [2c+1, n_out]` unless `fixed`
(sinusoids, see tests/numpy_reference.py `fixed_relative_encoding_matrix`).
"""
from __future__ import annotations

from ..dims import Shape, feature_dim, spatial_dim
from .base import LayerRule, ParamSpec


class RelativePositionalEncodingRule(LayerRule):
    layer_class = "relative_positional_encoding"

    def infer(self, ctx) -> Shape:
        src = ctx.source
        n_out = ctx.opt("n_out")
        if n_out is None:
            raise ctx.error("`relative_positional_encoding` needs `n_out` (the key dimension per "
                            "head of the self_attention it feeds)", None, "shape.missing-option")
        time = src.time
        if time is not None:
            return Shape((time, time, feature_dim(n_out)))
        if ctx.in_rec and ctx.loop_dim is not None:
            return Shape((spatial_dim(1), ctx.loop_dim, feature_dim(n_out)))
        raise ctx.error(
            f"`relative_positional_encoding` needs an input with a time axis (or to be inside a "
            f"rec unit), but `{', '.join(ctx.source_names)}` {src}", "from", "shape.no-time")

    def params(self, ctx, out: Shape) -> dict[str, ParamSpec]:
        if ctx.opt("fixed"):
            return {}
        c = ctx.opt("clipping")
        return {"encoding_matrix": ParamSpec((2 * c + 1, out.feature_size),
                                             ctx.opt("forward_weights_init"))}

    def guess_step_shape(self, ctx):
        return None
