"""`gating`: `activation(a) * gate_activation(b)` (RETURNN's GatingLayer), where a and b are the
two halves of the input's features (a the first, b the second): [..., 2n] -> [..., n].
With two inputs of n features each, a is the first input and b the second (the same as
splitting their concatenation). Defaults: `activation: tanh`, `gate_activation: sigmoid`.
"""

from __future__ import annotations

from netcompiler.core.dims import Shape, feature_dim
from netcompiler.core.layer_rule import LayerRule
from netcompiler.frontend.activations import keeps_finite
from netcompiler.layers._util import check_n_out, float_features, src_desc
from netcompiler.layers.combine import GuessFromInputs, check_activation, mask_padding


class GatingRule(GuessFromInputs, LayerRule):
    layer_class = "gating"

    def infer(self, ctx) -> Shape:
        src = float_features(ctx)
        size = src.feature.size
        if size % 2:
            raise ctx.error(
                f"`gating` splits the features in two halves, but {src_desc(ctx)} "
                f"has an odd number ({size}) of them",
                "from",
                "shape.gating",
                hint="give an even number of features (or two inputs of equal size)",
            )
        out = Shape(src.non_feature_dims + (feature_dim(size // 2),), None, src.dtype)
        check_activation(ctx, out, "activation")
        check_activation(ctx, out, "gate_activation")
        check_n_out(ctx, out)
        return out

    def call(self, ctx):
        import tensorflow as tf

        from netcompiler.backend.activations import apply_activation

        a, b = tf.split(ctx.source, 2, axis=-1)
        y = apply_activation(ctx.opt("activation"), a) * apply_activation(
            ctx.opt("gate_activation"), b
        )
        if keeps_finite(ctx.opt("activation")) and keeps_finite(ctx.opt("gate_activation")):
            return y  # finite padding stays finite: no mask needed
        return mask_padding(ctx, y)
