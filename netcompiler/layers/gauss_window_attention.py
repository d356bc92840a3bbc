"""`gauss_window_attention` (deprecated; one decoder step, semantics.md).

The source is a location per sequence, `[B]` or `[B, F=1]` (over a decoder sequence `[B,
T(dec)]` / `[B, T(dec), F=1]`). Output: a Gauss-weighted (unnormalised) window of `base`
`[B, Te, V]` around it: `[B, F=V]`, with `inner_size` I `[B, S=I, F=V]` (decoder sequence:
`[B, T(dec), (S=I,) F=V]`). No variables.
"""

from __future__ import annotations

from netcompiler.core.dims import Shape, feature_dim, spatial_dim
from netcompiler.core.layer_rule import LayerRule
from netcompiler.layers.dot_attention import (
    GAUSS_FORMULATION,
    check_base,
    decoder_axes,
    guess_attention_step,
)


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
                f"sequence [B, T(dec)] or [B, T(dec), F=1])",
                "from",
                "shape.gauss-location",
            )
        nf = decoder_axes(ctx, src, enc, "one float location")
        n_out = ctx.opts.get("n_out")
        if n_out is not None and n_out != base.feature_size:
            raise ctx.error(
                f"`n_out: {n_out}` differs from the features of `base` "
                f"`{ctx.ref_name('base')}` {base} ({base.feature_size})",
                "n_out",
                "shape.n-out",
            )
        inner = ctx.opt("inner_size")
        dims = nf + ((spatial_dim(inner, "inner"),) if inner is not None else ())
        return Shape(dims + (feature_dim(base.feature_size),))

    def guess_step_shape(self, ctx):
        return guess_attention_step(ctx, ctx.opt("inner_size"))

    def call(self, ctx):
        import math

        import tensorflow as tf

        from netcompiler.backend import compute

        shape = ctx.source_shape
        t = ctx.source
        if shape.feature is not None:
            t = t[..., 0]  # [B] / [B, Td]
        dec = len(shape.non_feature_dims) == 2
        if not dec:
            t = t[:, None]  # [B, 1]
        t = tf.cast(t, tf.float32)
        base = ctx.ref("base")  # [B, Te, V]
        lengths = ctx.lengths(ctx.ref_shape("base").dims[1])
        window = int(ctx.opt("window_size"))
        std = float(ctx.opt("std"))
        inner = ctx.opt("inner_size")
        if inner is not None:
            step = float(ctx.opt("inner_size_step"))
            offs = (tf.range(inner, dtype=tf.float32) - (inner - 1) / 2.0) * step
        else:
            offs = tf.zeros([1], tf.float32)
        c = tf.round(t)  # half to even
        idx = c[..., None] - float(window // 2) + tf.range(window, dtype=tf.float32)  # [B,Td,W]
        te = tf.cast(tf.shape(base)[1], tf.float32)
        last = tf.cast(lengths - 1, tf.float32)[:, None, None]
        g = tf.minimum(tf.clip_by_value(idx, 0.0, te - 1.0), last)
        g = tf.cast(tf.maximum(g, 0.0), tf.int32)
        diff = t[..., None, None] + offs - idx[..., None]  # [B, Td, W, I]
        w = tf.exp(-tf.square(diff) / (2.0 * std**2)) / (std * math.sqrt(2.0 * math.pi))
        frames = tf.gather(base, g, batch_dims=1)  # [B, Td, W, V]
        out = compute.einsum("btki,btkv->btiv", w, frames)  # [B, Td, I, V]
        if inner is None:
            out = out[:, :, 0]
        if not dec:
            out = out[:, 0]
        return out
