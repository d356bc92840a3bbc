"""`activation`: an element-wise activation (`relu`, `tanh`, `2*sigmoid`, ...); same shape.

`softmax` and `log_softmax` normalise over the feature axis. The functions are defined in
`netcompiler.frontend.activations` (shared with `linear`, `combine` and `eval`).
"""

from __future__ import annotations

from netcompiler.core.dims import Shape
from netcompiler.core.layer_rule import LayerRule
from netcompiler.frontend.activations import keeps_finite
from netcompiler.layers._util import check_n_out
from netcompiler.layers.combine import GuessFromInputs, check_activation, mask_padding


class ActivationRule(GuessFromInputs, LayerRule):
    layer_class = "activation"
    position_wise = True

    def infer(self, ctx) -> Shape:
        src = ctx.source
        name = ctx.opt("activation")
        if src.sparse or src.dtype != "float32":
            what = "sparse input (class indices)" if src.sparse else f"{src.dtype} input"
            raise ctx.error(
                f"`activation: {name}` of {what} `{', '.join(ctx.source_names)}` {src}",
                "from",
                "shape.dtype",
                hint="activations need float input; embed class indices with "
                "`linear`, or cast with `eval`",
            )
        check_activation(ctx, src)
        check_n_out(ctx, src)
        return src

    def call(self, ctx):
        from netcompiler.backend.activations import apply_activation

        y = apply_activation(ctx.opt("activation"), ctx.source)
        # finite padding stays finite through most activations; only the others need the mask
        return y if keeps_finite(ctx.opt("activation")) else mask_padding(ctx, y)
