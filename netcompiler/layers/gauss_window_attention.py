"""`gauss_window_attention` (deprecated; one decoder step, semantics.md).

The source is a location per sequence, `[B]` or `[B, F=1]` (over a decoder sequence `[B,
T(dec)]` / `[B, T(dec), F=1]`). Output: a Gauss-weighted (unnormalised) window of `base`
`[B, Te, V]` around it: `[B, F=V]`, with `inner_size` I `[B, S=I, F=V]` (decoder sequence:
`[B, T(dec), (S=I,) F=V]`). No variables.
"""
from __future__ import annotations

from ..dims import Shape, feature_dim, spatial_dim
from .base import LayerRule
from .dot_attention import GAUSS_FORMULATION, check_base, decoder_axes, guess_attention_step


class GaussWindowAttentionRule(LayerRule):
    layer_class = "gauss_window_attention"
    layer_options = ("base",)
    deprecated = GAUSS_FORMULATION

    def infer(self, ctx) -> Shape:
        base, enc = check_base(ctx)
        src = ctx.source
        if src.sparse or (src.feature is not None and src.feature_size != 1):
            raise ctx.error(
                f"source `{', '.join(ctx.source_names)}` {src}, but `gauss_window_attention` "
                f"needs one float location per sequence: [B] or [B, F=1] (over a decoder "
                f"sequence [B, T(dec)] or [B, T(dec), F=1])", "from", "shape.gauss-location")
        nf = decoder_axes(ctx, src, enc, "one float location")
        n_out = ctx.opts.get("n_out")
        if n_out is not None and n_out != base.feature_size:
            raise ctx.error(f"`n_out: {n_out}` differs from the features of `base` "
                            f"`{ctx.ref_name('base')}` {base} ({base.feature_size})", "n_out",
                            "shape.n-out")
        inner = ctx.opt("inner_size")
        dims = nf + ((spatial_dim(inner, "inner"),) if inner is not None else ())
        return Shape(dims + (feature_dim(base.feature_size),))

    def guess_step_shape(self, ctx):
        return guess_attention_step(ctx, ctx.opt("inner_size"))
