"""`dropout`: the input unchanged, with dropout (rate `dropout`) on it while training.

The dropout itself is the generic `dropout` option every layer has (applied to a layer's input
by the compiler, training only), so the builder returns its (already dropped-out) input.
"""

from __future__ import annotations

from netcompiler.core.dims import Shape
from netcompiler.core.layer_rule import LayerRule
from netcompiler.layers._util import check_n_out
from netcompiler.layers.combine import GuessFromInputs


class DropoutRule(GuessFromInputs, LayerRule):
    layer_class = "dropout"
    position_wise = True

    def infer(self, ctx) -> Shape:
        src = ctx.source
        if src.sparse or src.dtype != "float32":
            what = "sparse input (class indices)" if src.sparse else f"{src.dtype} input"
            raise ctx.error(
                f"`dropout` of {what} `{', '.join(ctx.source_names)}` {src}",
                "from",
                "shape.dtype",
                hint="dropout needs float input",
            )
        check_n_out(ctx, src)
        return src

    def call(self, ctx):
        import tensorflow as tf

        return tf.identity(ctx.source)
