"""`layer_norm`: normalisation over the feature axis with a learned scale and bias.

`y = (x - mean_F(x)) / sqrt(var_F(x) + epsilon) * scale + bias`; params `scale: [F]` (init 1)
and `bias: [F]` (init 0). Same shape as the input.
"""

from __future__ import annotations

from netcompiler.core.dims import Shape
from netcompiler.core.layer_rule import LayerRule, ParamSpec
from netcompiler.layers._util import check_n_out, float_features
from netcompiler.layers.combine import GuessFromInputs, mask_padding


class LayerNormRule(GuessFromInputs, LayerRule):
    layer_class = "layer_norm"
    position_wise = True

    def infer(self, ctx) -> Shape:
        src = float_features(ctx)
        check_n_out(ctx, src)
        return src

    def params(self, ctx, out: Shape) -> dict[str, ParamSpec]:
        n = out.feature_size
        return {"scale": ParamSpec((n,), 1.0), "bias": ParamSpec((n,), 0.0)}

    def call(self, ctx):
        import tensorflow as tf

        x = ctx.source
        eps = float(ctx.opt("epsilon"))
        mean = tf.reduce_mean(x, axis=-1, keepdims=True)
        var = tf.reduce_mean(tf.square(x - mean), axis=-1, keepdims=True)
        y = (x - mean) * tf.math.rsqrt(var + eps)
        y = y * ctx.params["scale"] + ctx.params["bias"]
        return mask_padding(ctx, y)
