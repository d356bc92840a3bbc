"""`batch_norm`: batch normalisation of the input (RETURNN's BatchNormLayer, a `copy` with the
`batch_norm` option on), with the same options and semantics as the common `batch_norm` option
(`_common_opts.apply_batch_norm`): statistics over every axis but the feature axis, padded
frames excluded with `masked_time`; the moving `mean`/`variance` (`<layer>/batch_norm/mean`,
`.../variance`: not trained, saved in checkpoints) are updated only while training (unless
`update_sample_only_in_training: false`), by `moving += (batch - moving) * momentum`; in
training the batch's statistics normalise (`use_sample` mixes in the moving ones), else the
moving ones; then `* gamma` (`use_std`) and `+ beta` (`use_shift`).
"""

from __future__ import annotations

from netcompiler.core.dims import Shape
from netcompiler.core.layer_rule import LayerRule
from netcompiler.layers._common_opts import BATCH_NORM_DEFAULTS, batch_norm_params
from netcompiler.layers._util import check_n_out, float_features
from netcompiler.layers.combine import GuessFromInputs


def layer_opts(ctx) -> dict:
    """The batch-norm options of the layer, defaults filled in."""
    return {k: ctx.opts.get(k, v) for k, v in BATCH_NORM_DEFAULTS.items()}


class BatchNormRule(GuessFromInputs, LayerRule):
    layer_class = "batch_norm"

    def infer(self, ctx) -> Shape:
        src = float_features(ctx)
        if ctx.in_rec:
            raise ctx.error(
                "`batch_norm` inside a rec unit is not supported (its statistics "
                "would be updated at every step of the loop)",
                None,
                "shape.unsupported",
                hint="move the layer out of the rec unit",
            )
        check_n_out(ctx, src)
        return src

    def params(self, ctx, out: Shape):
        return batch_norm_params(int(out.feature_size), layer_opts(ctx))

    def call(self, ctx):
        from netcompiler.layers._common_opts import apply_batch_norm

        return apply_batch_norm(ctx, ctx.source, ctx.out_shape, layer_opts(ctx))
