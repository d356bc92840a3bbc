"""`decide`: the best hypothesis of a beam, by score; the beam axis is dropped (RETURNN's
DecideLayer). Without a beam it is the identity, with the same shape (sparse labels stay sparse).

In netcompiler a forward pass (teacher forcing) has no beam: beam search is run by
`net.search` (netcompiler.backend.loop.runner), which finds the decoder through `decide` and itself returns
the best hypotheses (ranked with the `choice`'s `length_normalization`). So `decide` is the
identity when the network is compiled. `length_normalization` (RETURNN: divide the beam scores
by the hypothesis lengths before picking the best) is accepted; it has no effect without a beam.
"""

from __future__ import annotations

from netcompiler.core.dims import Shape
from netcompiler.core.layer_rule import LayerRule
from netcompiler.layers.combine import GuessFromInputs


class DecideRule(GuessFromInputs, LayerRule):
    layer_class = "decide"

    def infer(self, ctx) -> Shape:
        src = ctx.source
        n_out = ctx.opts.get("n_out")
        if n_out is not None and src.feature_size != n_out:
            raise ctx.error(
                f"`n_out: {n_out}` differs from the input "
                f"`{', '.join(ctx.source_names)}` {src} of `decide`",
                "n_out",
                "shape.n-out",
                hint="remove `n_out`; `decide` keeps its input's shape",
            )
        return src

    def call(self, ctx):
        import tensorflow as tf

        return tf.identity(ctx.source)
