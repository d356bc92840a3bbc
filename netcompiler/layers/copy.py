"""`copy`: the input unchanged (a `from` list: concatenated on the feature axis)."""

from __future__ import annotations

from netcompiler.core.dims import Shape
from netcompiler.core.layer_rule import LayerRule
from netcompiler.layers._util import check_n_out
from netcompiler.layers.combine import GuessFromInputs


class CopyRule(GuessFromInputs, LayerRule):
    layer_class = "copy"
    position_wise = True

    def infer(self, ctx) -> Shape:
        src = ctx.source
        check_n_out(ctx, src)
        return src

    def call(self, ctx):
        import tensorflow as tf

        return tf.identity(ctx.source)
