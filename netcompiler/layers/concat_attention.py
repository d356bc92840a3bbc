"""`concat_attention` (deprecated; one decoder step, semantics.md).

As `dot_attention`, with `e[b,j] = sum_d v[d] * tanh(base_ctx[b,j,d] + s[b,d])` and one
variable `v: [D]`; no bias, no projection. `[B, V]` (or `[B, T(dec), V]`).
"""

from __future__ import annotations

from netcompiler.core.dims import Shape
from netcompiler.core.layer_rule import LayerRule, ParamSpec
from netcompiler.layers.dot_attention import (
    CONCAT_FORMULATION,
    attend,
    attention_output,
    guess_attention_step,
    to_decoder_form,
)


class ConcatAttentionRule(LayerRule):
    layer_class = "concat_attention"
    layer_options = ("base", "base_ctx")
    deprecated = CONCAT_FORMULATION

    def infer(self, ctx) -> Shape:
        return attention_output(ctx, ctx.source, "base_ctx")

    def guess_step_shape(self, ctx):
        return guess_attention_step(ctx)

    def params(self, ctx, out: Shape) -> dict[str, ParamSpec]:
        return {"v": ParamSpec((ctx.source.feature_size,), ctx.opt("forward_weights_init"))}

    def call(self, ctx):
        import tensorflow as tf

        from netcompiler.backend import compute

        s, squeeze = to_decoder_form(ctx.source, ctx.source_shape)  # [B, Td, D]
        base_ctx = ctx.ref("base_ctx")  # [B, Te, D]
        h = tf.tanh(base_ctx[:, None, :, :] + s[:, :, None, :])  # [B, Td, Te, D]
        energy = compute.einsum("btjd,d->btj", h, ctx.params["v"])
        return attend(ctx, energy, squeeze)
